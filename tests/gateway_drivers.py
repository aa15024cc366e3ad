"""Driver programs the gateway tests run in pyqldb's own environment (tests/qldb_venv.py).

Each is a Python source string run as `python -c SCRIPT URL LEDGER [...]` by the qldb venv's
interpreter, against a gateway the test started; it prints one JSON object (its findings) as
its last line of output, and the test asserts on it. They use only pyqldb 3.2.4, boto3 and
botocore 1.40.60 and amazon-ion 0.9.3, exactly as a QLDB application did. `BOTO3_CONTROL`
is the start of the control-plane (boto3 `qldb`) scripts other tests run the same way.
"""

from __future__ import annotations

# The start of a control-plane script run as `python -c SCRIPT ENDPOINT [...]`: `qldb`, a boto3
# client of the endpoint, and `all_pages(call, key, **kwargs)`, every item under `key` of a
# paged list call and how many pages it took (NextToken followed until a page has none).
BOTO3_CONTROL = r"""
import base64, json, sys
import boto3
from botocore.exceptions import ClientError

endpoint = sys.argv[1]
qldb = boto3.client("qldb", endpoint_url=endpoint, region_name="us-east-1",
                    aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret")

def all_pages(call, key, **kwargs):
    items, pages = [], 0
    while True:
        page = call(**kwargs)
        pages += 1
        items += page[key]
        if "NextToken" not in page:
            return items, pages
        kwargs["NextToken"] = page["NextToken"]
"""

COMMON = r"""
import json, sys, threading, time
from datetime import datetime
from decimal import Decimal
from botocore.exceptions import ClientError
from pyqldb.driver.qldb_driver import QldbDriver
from pyqldb.config.retry_config import RetryConfig
from amazon.ion.simpleion import loads, dumps
from amazon.ion.equivalence import ion_equals
import boto3

URL, LEDGER = sys.argv[1], sys.argv[2]
KEYS = dict(aws_access_key_id="AKIDSTRAND", aws_secret_access_key="strand-secret")
out = {}

def driver(url=URL, ledger=LEDGER, **kw):
    return QldbDriver(ledger, endpoint_url=url, region_name="eu-central-1", **KEYS, **kw)

def low_level(url=URL, **keys):
    return boto3.client("qldb-session", endpoint_url=url, region_name="us-west-2",
                        **(keys or KEYS))

def code(exc):
    return exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"]
"""

# The vehicle registration tutorial (amazon-qldb-dmv-sample-python), many pages, history,
# committed views, redaction and Ion values from amazon-ion 0.9.3, through one driver.
FUNCTIONAL = (
    COMMON
    + r"""
d = driver()
commits = [0]
def run(fn, cfg=None):
    result = d.execute_lambda(fn, cfg)
    commits[0] += 1  # pyqldb raises IllegalStateError when the server's digest differs
    return result

for table in ("VehicleRegistration", "Vehicle", "Person", "DriversLicense"):
    run(lambda ex: ex.execute_statement(f"CREATE TABLE {table}"))
for table, field in (("Person", "GovId"), ("Vehicle", "VIN"), ("VehicleRegistration", "VIN"),
                     ("VehicleRegistration", "LicensePlateNumber"),
                     ("DriversLicense", "PersonId"), ("DriversLicense", "LicenseNumber")):
    run(lambda ex: ex.execute_statement(f"CREATE INDEX ON {table} ({field})"))
out["tables"] = sorted(d.list_tables())

PEOPLE = [
    {"FirstName": "Raul", "LastName": "Lewis", "DOB": datetime(1963, 8, 19),
     "GovId": "LEWISR261LL", "GovIdType": "Driver License",
     "Address": "1719 University Street, Seattle, WA, 98109"},
    {"FirstName": "Brent", "LastName": "Logan", "DOB": datetime(1967, 7, 3),
     "GovId": "LOGANB486CG", "GovIdType": "Driver License",
     "Address": "43 Stockert Hollow Road, Everett, WA, 98203"},
    {"FirstName": "Alexis", "LastName": "Pena", "DOB": datetime(1974, 2, 10),
     "GovId": "744 849 301", "GovIdType": "SSN",
     "Address": "4058 Melrose Street, Spokane Valley, WA, 99206"},
]
VEHICLES = [
    {"VIN": "1N4AL11D75C109151", "Type": "Sedan", "Year": 2011, "Make": "Audi",
     "Model": "A5", "Color": "Silver"},
    {"VIN": "KM8SRDHF6EU074761", "Type": "Sedan", "Year": 2015, "Make": "Tesla",
     "Model": "Model S", "Color": "Blue"},
]
REGISTRATIONS = [
    {"VIN": "1N4AL11D75C109151", "LicensePlateNumber": "LEWISR261LL", "State": "WA",
     "City": "Seattle", "ValidFromDate": datetime(2017, 8, 21),
     "ValidToDate": datetime(2020, 5, 11), "PendingPenaltyTicketAmount": Decimal("90.25"),
     "Owners": {"PrimaryOwner": {"PersonId": ""}, "SecondaryOwners": []}},
    {"VIN": "KM8SRDHF6EU074761", "LicensePlateNumber": "CA762X", "State": "WA",
     "City": "Kent", "ValidFromDate": datetime(2017, 9, 14),
     "ValidToDate": datetime(2020, 6, 25), "PendingPenaltyTicketAmount": Decimal("130.75"),
     "Owners": {"PrimaryOwner": {"PersonId": ""}, "SecondaryOwners": []}},
]
LICENSES = [
    {"PersonId": "", "LicenseNumber": "LEWISR261LL", "LicenseType": "Learner",
     "ValidFromDate": datetime(2016, 12, 20), "ValidToDate": datetime(2020, 11, 15)},
    {"PersonId": "", "LicenseNumber": "LOGANB486CG", "LicenseType": "Probationary",
     "ValidFromDate": datetime(2016, 4, 6), "ValidToDate": datetime(2020, 11, 15)},
]

def load_sample(ex):
    ids = [r["documentId"] for r in ex.execute_statement("INSERT INTO Person ?", PEOPLE)]
    for i, reg in enumerate(REGISTRATIONS):
        reg["Owners"]["PrimaryOwner"]["PersonId"] = ids[i]
    for i, lic in enumerate(LICENSES):
        lic["PersonId"] = ids[i]
    ex.execute_statement("INSERT INTO Vehicle ?", VEHICLES)
    ex.execute_statement("INSERT INTO VehicleRegistration ?", REGISTRATIONS)
    ex.execute_statement("INSERT INTO DriversLicense ?", LICENSES)
    return ids
person_ids = run(load_sample)

def person_id(ex, gov_id):
    rows = list(ex.execute_statement("SELECT id FROM Person AS p BY id WHERE p.GovId = ?", gov_id))
    return rows[0]["id"]

def vehicles_of(ex, gov_id):
    pid = person_id(ex, gov_id)
    rows = ex.execute_statement(
        "SELECT v FROM Vehicle AS v INNER JOIN VehicleRegistration AS r ON v.VIN = r.VIN "
        "WHERE r.Owners.PrimaryOwner.PersonId = ?", pid)
    return sorted(r["v"]["VIN"] for r in rows)
out["lewis_vehicles"] = run(lambda ex: vehicles_of(ex, "LEWISR261LL"))

VIN = "1N4AL11D75C109151"
def transfer(ex):
    new_owner = person_id(ex, "LOGANB486CG")
    return list(ex.execute_statement(
        "UPDATE VehicleRegistration AS r SET r.Owners.PrimaryOwner.PersonId = ? WHERE r.VIN = ?",
        new_owner, VIN))
out["transfer_rows"] = len(run(transfer))
def add_secondary(ex):
    pid = person_id(ex, "744 849 301")
    return list(ex.execute_statement(
        "FROM VehicleRegistration AS r WHERE r.VIN = ? "
        "INSERT INTO r.Owners.SecondaryOwners VALUE ?",
        VIN, {"PersonId": pid}))
run(add_secondary)
out["logan_vehicles"] = run(lambda ex: vehicles_of(ex, "LOGANB486CG"))
run(lambda ex: ex.execute_statement(
    "UPDATE DriversLicense AS d SET d.ValidFromDate = ?, d.ValidToDate = ? "
    "WHERE d.LicenseNumber = ?",
    datetime(2019, 1, 1), datetime(2023, 1, 1), "LEWISR261LL"))
license_id = run(lambda ex: list(ex.execute_statement(
    "SELECT id FROM DriversLicense AS d BY id WHERE d.LicenseNumber = ?", "LOGANB486CG"))[0]["id"])
out["deleted"] = len(run(lambda ex: list(ex.execute_statement(
    "DELETE FROM DriversLicense AS d WHERE d.LicenseNumber = ?", "LOGANB486CG"))))
out["licenses_left"] = run(lambda ex: [r["LicenseNumber"] for r in ex.execute_statement(
    "SELECT * FROM DriversLicense")])

reg_id = run(lambda ex: list(ex.execute_statement(
    "SELECT r_id FROM VehicleRegistration AS r BY r_id WHERE r.VIN = ?", VIN))[0]["r_id"])
history = run(lambda ex: list(ex.execute_statement(
    "SELECT * FROM history(VehicleRegistration) AS h WHERE h.metadata.id = ?", reg_id)))
out["history_versions"] = [h["metadata"]["version"] for h in history]
out["history_secondary"] = [len(h["data"]["Owners"]["SecondaryOwners"]) for h in history]
lic_history = run(lambda ex: list(ex.execute_statement(
    "SELECT * FROM history(DriversLicense) AS h WHERE h.metadata.id = ?", license_id)))
out["license_history_has_data"] = ["data" in h for h in lic_history]
committed = run(lambda ex: list(ex.execute_statement(
    "SELECT * FROM _ql_committed_VehicleRegistration AS r WHERE r.data.VIN = ?", VIN)))
out["committed_keys"] = sorted(committed[0].keys())
out["committed_version"] = committed[0]["metadata"]["version"]

# redaction of the registration's first revision
table_id = run(lambda ex: list(ex.execute_statement(
    "SELECT tableId FROM information_schema.user_tables WHERE name = ?",
    "VehicleRegistration"))[0]["tableId"])
first = history[0]
run(lambda ex: ex.execute_statement(
    f"EXEC redact_revision ?, '{table_id}', '{reg_id}'", first["blockAddress"]))
after = run(lambda ex: list(ex.execute_statement(
    "SELECT * FROM history(VehicleRegistration) AS h WHERE h.metadata.id = ?", reg_id)))
out["redacted"] = ["data" in h for h in after]
out["redacted_hash_kept"] = after[0]["hash"] == first["hash"] and "dataHash" in after[0]

# Ion values written by amazon-ion 0.9.3 come back exactly
INTEROP = loads('''{
  dec: 1.50, negzero: -0.00, small: 1.5d-7, big: 123456789012345678901234567890,
  ts_year: 2007T, ts_day: 2007-02-23, ts_min: 2007-02-23T12:14Z,
  ts_off: 2007-02-23T12:14:33.079-08:00, ts_frac: 2001-01-01T00:00:00.000001+05:30,
  sym: 'a symbol', sym2: hello, blob: {{aGVsbG8=}}, clob: {{"clob text"}},
  annotated: kg::units::12, alist: [1, 2.0e0, "three", null.int, null], sexp: (a b 1),
  f: 1.5e0, inf: +inf, nested: {a: {b: [{c: null.timestamp}]}}, flag: true,
  empty: "", unicode: "h\u00e9llo \u2713", nulls: [null.string, null.blob, null.list]
}''')
run(lambda ex: ex.execute_statement("CREATE TABLE Interop"))
run(lambda ex: ex.execute_statement("INSERT INTO Interop ?", INTEROP))
got = run(lambda ex: list(ex.execute_statement("SELECT * FROM Interop"))[0])
out["interop_equal"] = ion_equals(INTEROP, got)
if not out["interop_equal"]:
    out["interop_sent"] = dumps(INTEROP, binary=False)
    out["interop_got"] = dumps(got, binary=False)
got_param = run(lambda ex: list(ex.execute_statement("SELECT VALUE ? FROM << 1 >>", INTEROP))[0])
out["interop_param_equal"] = ion_equals(INTEROP, got_param)

# many pages: 480 small documents, then 12 documents of 100 KB (pages split by bytes)
run(lambda ex: ex.execute_statement("CREATE TABLE Bulk"))
for batch in range(12):
    run(lambda ex: ex.execute_statement(
        "INSERT INTO Bulk ?", [{"n": batch * 40 + i, "pad": "x" * 50} for i in range(40)]))
out["bulk_count"] = run(lambda ex: len(list(ex.execute_statement("SELECT * FROM Bulk"))))
out["bulk_sum"] = run(lambda ex: sum(r["n"] for r in ex.execute_statement("SELECT n FROM Bulk")))
run(lambda ex: ex.execute_statement("CREATE TABLE Big"))
run(lambda ex: [ex.execute_statement("INSERT INTO Big ?", {"n": i, "blob": bytes([i]) * 100_000})
               for i in range(12)])
with driver(read_ahead=3) as ahead:  # FetchPage from pyqldb's background thread
    out["read_ahead_count"] = ahead.execute_lambda(
        lambda ex: len(list(ex.execute_statement("SELECT * FROM Bulk"))))
    big = ahead.execute_lambda(lambda ex: [(r["n"], r["blob"]) for r in
                                           ex.execute_statement("SELECT * FROM Big")])
    out["big_ok"] = sorted(big) == [(i, bytes([i]) * 100_000) for i in range(12)]

# the pages on the wire: sizes and tokens, through the low-level client
c = low_level()
token = c.send_command(StartSession={"LedgerName": LEDGER})["StartSession"]["SessionToken"]
txid = c.send_command(SessionToken=token, StartTransaction={})["StartTransaction"]["TransactionId"]
def pages(statement):
    page = c.send_command(SessionToken=token, ExecuteStatement={
        "TransactionId": txid, "Statement": statement, "Parameters": []})
    page = page["ExecuteStatement"]["FirstPage"]
    sizes = []
    while True:
        sizes.append((len(page["Values"]), sum(len(v["IonBinary"]) for v in page["Values"])))
        if "NextPageToken" not in page:
            return sizes
        page = c.send_command(SessionToken=token, FetchPage={
            "TransactionId": txid, "NextPageToken": page["NextPageToken"]})["FetchPage"]["Page"]
out["bulk_pages"] = pages("SELECT * FROM Bulk")
out["big_pages"] = pages("SELECT * FROM Big")
c.send_command(SessionToken=token, AbortTransaction={})
c.send_command(SessionToken=token, EndSession={})

# a PartiQL error is BadRequestException, raised at once (not retried)
calls = [0]
def bad(ex):
    calls[0] += 1
    ex.execute_statement("SELECT FROM WHERE")
try:
    d.execute_lambda(bad)
except ClientError as e:
    out["syntax_error"] = code(e)
out["syntax_error_calls"] = calls[0]
out["commits"] = commits[0]
d.close()
print(json.dumps(out, default=str))
"""
)

# OCC conflicts retried by the driver; concurrent drivers; every increment lands once.
CONTENTION = (
    COMMON
    + r"""
THREADS, PER_THREAD = int(sys.argv[3]), int(sys.argv[4])
setup = driver()
setup.execute_lambda(lambda ex: ex.execute_statement("CREATE TABLE Counter"))
setup.execute_lambda(lambda ex: ex.execute_statement("CREATE INDEX ON Counter (name)"))
setup.execute_lambda(
    lambda ex: ex.execute_statement("INSERT INTO Counter ?", {"name": "c", "n": 0}))
occ = []
lock = threading.Lock()
def backoff(attempt, error, transaction_id):
    with lock:
        occ.append(error.response["Error"]["Code"])
    return 5
cfg = RetryConfig(retry_limit=100, base=5, custom_backoff=backoff)

def increment(ex):
    [row] = list(ex.execute_statement("SELECT n FROM Counter WHERE name = 'c'"))
    ex.execute_statement("UPDATE Counter AS k SET k.n = ? WHERE k.name = 'c'", row["n"] + 1)

# a conflict forced: another driver commits between this transaction's read and its commit
attempts = [0]
other = driver()
def interfered(ex):
    attempts[0] += 1
    [row] = list(ex.execute_statement("SELECT n FROM Counter WHERE name = 'c'"))
    if attempts[0] == 1:
        other.execute_lambda(increment)
    ex.execute_statement("UPDATE Counter AS k SET k.n = ? WHERE k.name = 'c'", row["n"] + 1)
setup.execute_lambda(interfered, cfg)
out["forced_attempts"] = attempts[0]

drivers = [driver(), other]
errors = []
slowest = [0.0, 0.0]  # the slowest transaction begun before the line, and after it
def work(drv):
    try:
        for _ in range(PER_THREAD):
            drv.execute_lambda(increment, cfg)
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=work, args=(drivers[i % 2],)) for i in range(THREADS)]
for t in threads: t.start()
for t in threads: t.join()
out["errors"] = errors
out["final"] = setup.execute_lambda(
    lambda ex: list(ex.execute_statement("SELECT n FROM Counter WHERE name = 'c'"))[0]["n"])
out["expected"] = 2 + THREADS * PER_THREAD
out["occ"] = occ
for drv in (setup, *drivers): drv.close()
print(json.dumps(out))
"""
)

# Against a gateway with a 1.5 s transaction timeout and a 2 s idle timeout, and the
# protocol's refusals through the low-level client.
EXPIRY_AND_ERRORS = (
    COMMON
    + r"""
d = driver()
d.execute_lambda(lambda ex: ex.execute_statement("CREATE TABLE T"))
calls = [0]
def slow(ex):
    calls[0] += 1
    ex.execute_statement("SELECT * FROM T")
    time.sleep(1.7)  # past the transaction timeout, within the idle timeout
    ex.execute_statement("INSERT INTO T ?", {"late": True})
try:
    d.execute_lambda(slow)
    out["expired"] = None
except ClientError as e:
    out["expired"] = list(code(e)) + [e.response["Error"]["Message"]]
out["expired_calls"] = calls[0]  # not retried
out["late_rows"] = d.execute_lambda(lambda ex: len(list(ex.execute_statement("SELECT * FROM T"))))
d.execute_lambda(lambda ex: ex.execute_statement("INSERT INTO T ?", {"before_idle": 1}))
time.sleep(2.5)  # every session of the driver's pool expires (idle)
out["after_idle"] = d.execute_lambda(
    lambda ex: len(list(ex.execute_statement("SELECT * FROM T"))))

c = low_level()
def start():
    token = c.send_command(StartSession={"LedgerName": LEDGER})["StartSession"]["SessionToken"]
    txid = c.send_command(SessionToken=token, StartTransaction={})
    return token, txid["StartTransaction"]["TransactionId"]
def err(**kw):
    try:
        c.send_command(**kw)
        return None
    except ClientError as e:
        return list(code(e))

token, txid = start()
time.sleep(2.5)
out["idle_session"] = err(SessionToken=token, StartTransaction={})
token, txid = start()
c.send_command(SessionToken=token, ExecuteStatement={
    "TransactionId": txid, "Statement": "INSERT INTO T ?",
    "Parameters": [{"IonBinary": dumps({"wrong_digest": 1})}]})
out["wrong_digest"] = err(SessionToken=token, CommitTransaction={
    "TransactionId": txid, "CommitDigest": b"\x00" * 32})
out["wrong_digest_rows"] = d.execute_lambda(lambda ex: len(list(
    ex.execute_statement("SELECT * FROM T WHERE wrong_digest = 1"))))
txid = c.send_command(SessionToken=token, StartTransaction={})["StartTransaction"]["TransactionId"]
out["bad_page_token"] = err(SessionToken=token, FetchPage={
    "TransactionId": txid, "NextPageToken": "bm9wZQ=="})
out["other_txid"] = err(SessionToken=token, ExecuteStatement={
    "TransactionId": "A" * 22, "Statement": "SELECT * FROM T", "Parameters": []})
out["bad_ion"] = err(SessionToken=token, ExecuteStatement={
    "TransactionId": txid, "Statement": "SELECT * FROM T WHERE a = ?",
    "Parameters": [{"IonBinary": b"\xe0\x01\x00\xea\xff\xff"}]})
out["no_session"] = err(SessionToken="bm9zdWNoc2Vzc2lvbg==", StartTransaction={})
out["no_ledger"] = err(StartSession={"LedgerName": "no-such-ledger"})
wrong = low_level(aws_access_key_id="AKIDSTRAND", aws_secret_access_key="not-the-secret")
try:
    wrong.send_command(StartSession={"LedgerName": LEDGER})
except ClientError as e:
    out["wrong_secret"] = list(code(e))
unknown = low_level(aws_access_key_id="AKIDUNKNOWN", aws_secret_access_key="x")
try:
    unknown.send_command(StartSession={"LedgerName": LEDGER})
except ClientError as e:
    out["unknown_key"] = list(code(e))
c.send_command(SessionToken=token, EndSession={})
d.close()
print(json.dumps(out))
"""
)

# `strand serve` over TLS: a transaction, then one left open while the server is stopped.
TLS = (
    COMMON
    + r"""
CA = sys.argv[3]
d = QldbDriver(LEDGER, endpoint_url=URL, region_name="us-east-1", verify=CA, **KEYS)
d.execute_lambda(lambda ex: ex.execute_statement("CREATE TABLE T"))
d.execute_lambda(lambda ex: ex.execute_statement("INSERT INTO T ?", {"a": 1}))
out["rows"] = d.execute_lambda(lambda ex: len(list(ex.execute_statement("SELECT * FROM T"))))
# the control plane on the same port: a ledger made through boto3's qldb client, then used
qldb = boto3.client("qldb", endpoint_url=URL, region_name="us-east-1", verify=CA, **KEYS)
qldb.create_ledger(Name="made-by-api", PermissionsMode="STANDARD", DeletionProtection=False)
for _ in range(100):
    if qldb.describe_ledger(Name="made-by-api")["State"] == "ACTIVE":
        break
    time.sleep(0.1)
with QldbDriver("made-by-api", endpoint_url=URL, region_name="us-east-1", verify=CA,
                **KEYS) as made:
    made.execute_lambda(lambda ex: ex.execute_statement("CREATE TABLE Fresh"))
out["ledgers"] = sorted(x["Name"] for x in qldb.list_ledgers()["Ledgers"])
arn = qldb.describe_ledger(Name="made-by-api")["Arn"]
qldb.tag_resource(ResourceArn=arn, Tags={"team": "dmv", "env": "test"})
qldb.untag_resource(ResourceArn=arn, TagKeys=["env"])
out["tags"] = qldb.list_tags_for_resource(ResourceArn=arn)["Tags"]
out["digest_bytes"] = len(qldb.get_digest(Name="made-by-api")["Digest"])
def held(ex):
    ex.execute_statement("INSERT INTO T ?", {"a": 2})
    print("OPEN", flush=True)
    sys.stdin.readline()  # the test stops the server now
    time.sleep(0.5)
try:
    d.execute_lambda(held, RetryConfig(retry_limit=0))
    out["held"] = "committed"
except Exception as e:
    out["held"] = type(e).__name__
print(json.dumps(out))
"""
)

# Against `strand serve --cluster`: the ledger made through boto3's qldb client, then many
# small transactions from THREADS threads (each inserts a row with a unique id and increments
# one of a few shared counters) while the test kills the group's leader. Protocol with the
# test: prints READY (ledger ACTIVE, tables made), RUNNING (transactions committed), then
# waits for a line on stdin (the leader was killed and another leads) and runs on until
# every thread has committed AFTER more transactions since that line. An acknowledged
# transaction is one whose execute_lambda returned (pyqldb checked the commit digest).
FAILOVER = (
    COMMON
    + r"""
THREADS, COUNTERS, AFTER = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
qldb = boto3.client("qldb", endpoint_url=URL, region_name="eu-west-1", **KEYS)
qldb.create_ledger(Name=LEDGER, PermissionsMode="STANDARD", DeletionProtection=False)
states = []
while True:
    state = qldb.describe_ledger(Name=LEDGER)["State"]
    if not states or states[-1] != state:
        states.append(state)
    if state == "ACTIVE":
        break
    time.sleep(0.1)
out["states"] = states
from botocore.config import Config
d = driver(config=Config(max_pool_connections=THREADS + 2))  # a session for every thread
d.execute_lambda(lambda ex: ex.execute_statement("CREATE TABLE Item"))
d.execute_lambda(lambda ex: ex.execute_statement("CREATE INDEX ON Item (uid)"))
d.execute_lambda(lambda ex: ex.execute_statement("CREATE TABLE Counter"))
d.execute_lambda(lambda ex: ex.execute_statement("CREATE INDEX ON Counter (name)"))
d.execute_lambda(lambda ex: ex.execute_statement(
    "INSERT INTO Counter ?", [{"name": f"c{k}", "n": 0} for k in range(COUNTERS)]))
print("READY", flush=True)

lock = threading.Lock()
retried = {}
timeline = []
started = time.monotonic()
def backoff(attempt, error, transaction_id):
    key = "%s/%s" % code(error) if isinstance(error, ClientError) else type(error).__name__
    with lock:
        retried[key] = retried.get(key, 0) + 1
        timeline.append((round(time.monotonic() - started, 2), key))
    return min(10 * 2 ** attempt, 500)
cfg = RetryConfig(retry_limit=30, custom_backoff=backoff)

acked = []  # (uid, counter) of every transaction whose execute_lambda returned
errors = []
slowest = [0.0, 0.0]  # the slowest transaction begun before the line, and after it
killed = threading.Event()
after = [0] * THREADS
def step(uid, counter):
    def fn(ex):
        ex.execute_statement("INSERT INTO Item ?", {"uid": uid})
        [row] = list(ex.execute_statement("SELECT n FROM Counter WHERE name = ?", counter))
        ex.execute_statement(
            "UPDATE Counter AS c SET c.n = ? WHERE c.name = ?", row["n"] + 1, counter)
    return fn
def work(t):
    i = 0
    while after[t] < AFTER:
        uid, counter = f"t{t}-{i}", f"c{t % COUNTERS}"
        i += 1
        was_killed = killed.is_set()
        began = time.monotonic()
        try:
            d.execute_lambda(step(uid, counter), cfg)
        except Exception as exc:
            errors.append(f"{uid}: {exc!r}")
            return
        with lock:
            acked.append((uid, counter))
            took = time.monotonic() - began
            if took > 1:
                timeline.append((round(time.monotonic() - started, 2), f"{uid} took {took:.1f}"))
            slowest[was_killed] = max(slowest[was_killed], took)
        if was_killed:
            after[t] += 1
threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
for t in threads: t.start()
while len(acked) < 4 * THREADS and not errors:
    time.sleep(0.02)
print("RUNNING", flush=True)
sys.stdin.readline()
timeline.append((round(time.monotonic() - started, 2), "killed"))
out["acked_before_kill"] = len(acked)
killed.set()
for t in threads: t.join()
out["seconds"] = time.monotonic() - started
out["errors"] = errors
out["acked"] = len(acked)
out["retried"] = retried
out["slowest_s"] = slowest
out["timeline"] = [t for t in timeline if "Occ" not in t[1]]  # OCC retries are routine

rows = d.execute_lambda(
    lambda ex: [r["uid"] for r in ex.execute_statement("SELECT uid FROM Item")])
seen = {}
for uid in rows:
    seen[uid] = seen.get(uid, 0) + 1
acked_uids = {uid for uid, _ in acked}
out["lost"] = sorted(acked_uids - set(seen))
out["doubled"] = sorted(uid for uid, n in seen.items() if n > 1)
out["unacknowledged_present"] = sorted(set(seen) - acked_uids)
counters = d.execute_lambda(lambda ex: {r["name"]: r["n"] for r in ex.execute_statement(
    "SELECT name, n FROM Counter")})
expected = {f"c{k}": 0 for k in range(COUNTERS)}
for _, counter in acked:
    expected[counter] += 1
out["counters"] = counters
out["expected_counters"] = expected
d.close()
print(json.dumps(out))
"""
)
