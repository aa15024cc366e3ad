"""cluster.config: the shipped TOML file, link overrides, secrets, and one error per bad field."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cluster.config import ClusterConfig, ConfigError, load_config, parse_config

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED = REPO_ROOT / "configs" / "local-3az.toml"
SECRET = "a-test-secret-of-enough-bytes"


def valid() -> dict[str, Any]:
    return {
        "cluster_name": "test",
        "secret": SECRET,
        "nodes": [
            {"name": n, "az": f"az-{n}", "host": "127.0.0.1", "port": p, "data_dir": f"d/{n}"}
            for n, p in (("a", 5001), ("b", 5002), ("c", 5003))
        ],
    }


def parse(data: dict[str, Any]) -> ClusterConfig:
    return parse_config(data, "/base")


def test_shipped_config_loads() -> None:
    config = load_config(SHIPPED)
    assert config.cluster_name == "strand-local"
    assert config.node_names == ("a", "b", "c")
    assert [node.az for node in config.nodes] == ["az-a", "az-b", "az-c"]
    assert [node.port for node in config.nodes] == [47101, 47102, 47103]
    assert {node.host for node in config.nodes} == {"127.0.0.1"}
    assert config.node("b").data_dir == str(REPO_ROOT / "data" / "cluster" / "b")
    assert len(config.links) == 6
    assert {(link.src, link.dst) for link in config.links} == {
        (s, d) for s in "abc" for d in "abc" if s != d
    }
    assert config.link("a", "c") == ("127.0.0.1", 47103)
    assert config.peer_addresses("b") == {"a": ("127.0.0.1", 47101), "c": ("127.0.0.1", 47103)}
    assert (config.tick_ms, config.heartbeat_ticks, config.election_ticks) == (50, 2, 10)
    assert config.heartbeat_interval_ms == 100
    assert config.election_timeout_ms == 500
    assert config.max_batch_transactions == 256
    assert config.max_entries_per_message == 64
    assert [config.client_port(n) for n in "abc"] == [47201, 47202, 47203]
    assert len(config.secret) >= 16
    assert "secret=" not in repr(config)  # repr hides the secret
    assert config.secret.decode() not in repr(config)
    hash(config)


def test_data_dirs_do_not_depend_on_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config(SHIPPED).node("a").data_dir == str(REPO_ROOT / "data" / "cluster" / "a")


def test_load_resolves_against_the_files_parent_parent(tmp_path: Path) -> None:
    (tmp_path / "configs").mkdir()
    path = tmp_path / "configs" / "one.toml"
    path.write_text(
        'cluster_name = "one"\nsecret = "' + SECRET + '"\n'
        '[[nodes]]\nname = "solo"\naz = "az-a"\nhost = "localhost"\nport = 7000\n'
        'data_dir = "data/solo"\n'
    )
    config = load_config(path)
    assert config.node("solo").data_dir == str(tmp_path / "data" / "solo")
    assert config.links == ()
    assert config.peer_addresses("solo") == {}
    assert config.client_port("solo") is None
    assert config.election_timeout_ms == 500  # defaults


def test_absolute_data_dir_is_kept() -> None:
    data = valid()
    data["nodes"][0]["data_dir"] = "/srv/strand/a"
    assert parse(data).node("a").data_dir == "/srv/strand/a"


def test_client_link_overrides() -> None:
    data = valid()
    data["client_links"] = {"b": "127.0.0.1:7002", "a": {"host": "proxy.local", "port": 7001}}
    config = parse(data)
    assert config.client_link("a") == ("proxy.local", 7001)
    assert config.client_link("b") == ("127.0.0.1", 7002)
    assert config.client_link("c") is None
    with pytest.raises(KeyError):
        config.client_link("z")


def test_link_overrides() -> None:
    data = valid()
    data["links"] = {"a->b": "127.0.0.1:6001", "c->a": {"host": "proxy.local", "port": 6002}}
    config = parse(data)
    assert config.link("a", "b") == ("127.0.0.1", 6001)
    assert config.link("c", "a") == ("proxy.local", 6002)
    assert config.link("b", "a") == ("127.0.0.1", 5001)  # not overridden
    assert config.peer_addresses("a") == {"b": ("127.0.0.1", 6001), "c": ("127.0.0.1", 5003)}
    with pytest.raises(KeyError):
        config.link("a", "a")
    with pytest.raises(KeyError):
        config.node("z")


def test_timing_overrides() -> None:
    data = valid() | {"tick_ms": 20, "heartbeat_ticks": 2, "election_ticks": 10}
    config = parse(data)
    assert (config.heartbeat_interval_ms, config.election_timeout_ms) == (40, 200)


def test_hex_secret() -> None:
    data = valid() | {"secret": "hex:" + "00ff" * 8}
    assert parse(data).secret == b"\x00\xff" * 8


def test_secret_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    data = valid()
    del data["secret"]
    data["secret_env"] = "STRAND_TEST_SECRET"
    monkeypatch.setenv("STRAND_TEST_SECRET", SECRET)
    assert parse(data).secret == SECRET.encode()
    monkeypatch.delenv("STRAND_TEST_SECRET")
    with pytest.raises(ConfigError, match="^secret_env: environment variable STRAND_TEST_SECRET"):
        parse(data)


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("cluster_name = \n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def _set(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    """A mutation setting data[k1][k2]... = value (integer parts index lists)."""

    def mutate(data: dict[str, Any]) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        target: Any = data
        for part in parents:
            target = target[part]
        target[last] = value

    return mutate


def _delete(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda data: data.pop(key)


def _use_env_too(data: dict[str, Any]) -> None:
    data["secret_env"] = "X"


def _drop_node(data: dict[str, Any]) -> None:
    data["nodes"].pop()


def _duplicate(field: str, value: object) -> Callable[[dict[str, Any]], None]:
    return _set(f"nodes.2.{field}", value)


BAD_FIELDS = [
    ("unknown_key", _set("colour", "red"), "colour: unknown key"),
    ("cluster_name_missing", _delete("cluster_name"), "cluster_name: must be"),
    ("cluster_name_blank", _set("cluster_name", ""), "cluster_name: must be"),
    ("secret_missing", _delete("secret"), "secret: missing"),
    ("secret_short", _set("secret", "short"), "secret: must be at least 16 bytes, got 5"),
    ("secret_bad_hex", _set("secret", "hex:zz"), "secret: invalid hex"),
    ("secret_not_str", _set("secret", 12345), "secret: must be a string"),
    ("secret_both", _use_env_too, "secret: give either secret or secret_env"),
    ("tick_zero", _set("tick_ms", 0), "tick_ms: must be an integer >= 1, got 0"),
    ("tick_str", _set("tick_ms", "10"), "tick_ms: must be an integer >= 1, got '10'"),
    ("heartbeat_bool", _set("heartbeat_ticks", True), "heartbeat_ticks: must be an integer"),
    ("election_le_hb", _set("election_ticks", 5), "election_ticks: must be > heartbeat_ticks"),
    ("batch_zero", _set("max_batch_transactions", 0), "max_batch_transactions: must be"),
    ("entries_neg", _set("max_entries_per_message", -1), "max_entries_per_message: must be"),
    ("nodes_even", _drop_node, "nodes: need an odd number of [[nodes]] (1, 3, 5, ...), got 2"),
    ("nodes_missing", _delete("nodes"), "nodes: need an odd number"),
    ("nodes_empty", _set("nodes", []), "nodes: need an odd number"),
    ("node_not_table", _set("nodes.1", "b"), "nodes[1]: must be a table"),
    ("node_unknown_key", _set("nodes.1.zone", "x"), "nodes[1].zone: unknown key"),
    ("node_name_bad", _set("nodes.1.name", "b->c"), "nodes[1].name: must be"),
    ("node_name_missing", _set("nodes.1.name", None), "nodes[1].name: must be"),
    ("node_az_bad", _set("nodes.0.az", "az a"), "nodes[0].az: must be"),
    ("node_host_empty", _set("nodes.2.host", ""), "nodes[2].host: must be a non-empty host"),
    (
        "node_port_str",
        _set("nodes.1.port", "x"),
        "nodes[1].port: must be an integer in 1..65535, got 'x'",
    ),
    ("node_port_big", _set("nodes.1.port", 70000), "nodes[1].port: must be an integer in 1..65535"),
    ("node_data_dir_missing", _set("nodes.0.data_dir", ""), "nodes[0].data_dir: must be"),
    ("node_name_dup", _duplicate("name", "a"), "nodes[2].name: 'a' is already used"),
    ("node_port_dup", _duplicate("port", 5001), "nodes[2].port: 5001 on 127.0.0.1 is already"),
    ("node_data_dir_dup", _duplicate("data_dir", "d/./a"), "nodes[2].data_dir: /base/d/a is"),
    ("links_not_table", _set("links", ["a->b"]), "links: must be a table"),
    ("client_links_not_table", _set("client_links", ["a"]), "client_links: must be a table"),
    ("client_link_unknown", _set("client_links", {"d": "h:1"}), "client_links.d: unknown node"),
    ("link_unknown_node", _set("links", {"a->d": "h:1"}), "links.a->d: unknown node 'd'"),
    ("link_unknown_src", _set("links", {"x->a": "h:1"}), "links.x->a: unknown node 'x'"),
    ("link_self", _set("links", {"a->a": "h:1"}), "links.a->a: a link joins two distinct"),
    ("link_key_bad", _set("links", {"ab": "h:1"}), "links.ab: key must be 'src->dst'"),
    ("link_no_port", _set("links", {"a->b": "h"}), "links.a->b: must be 'host:port'"),
    ("link_port_big", _set("links", {"a->b": "h:99999"}), "links.a->b.port: must be an integer"),
    ("link_no_host", _set("links", {"a->b": ":80"}), "links.a->b.host: must be a non-empty"),
    (
        "link_table_key",
        _set("links", {"a->b": {"host": "h", "port": 1, "x": 2}}),
        "links.a->b.x: unknown key",
    ),
    (
        "link_table_port",
        _set("links", {"a->b": {"host": "h", "port": "1"}}),
        "links.a->b.port: must be an integer in 1..65535, got '1'",
    ),
    ("link_value_type", _set("links", {"a->b": 5}), "links.a->b: must be 'host:port' or"),
    ("client_port_bad", _set("client_port_base", 0), "client_port_base: must be an integer"),
    ("client_port_over", _set("client_port_base", 65534), "client_port_base: 65534 + 2 nodes"),
    ("client_port_clash", _set("client_port_base", 5000), "client_port_base: client port 5001"),
]


@pytest.mark.parametrize(
    ("mutate", "message"), [case[1:] for case in BAD_FIELDS], ids=[case[0] for case in BAD_FIELDS]
)
def test_bad_field_names_the_field(mutate: Callable[[dict[str, Any]], None], message: str) -> None:
    data = copy.deepcopy(valid())
    mutate(data)
    with pytest.raises(ConfigError) as caught:
        parse(data)
    assert str(caught.value).startswith(message), str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_valid_base_case_parses() -> None:
    config = parse(valid())
    assert config.node("a").data_dir == "/base/d/a"
    assert len(config.links) == 6
