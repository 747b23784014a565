"""tuspy 1.1 against the example server.

    venv/bin/python tuspy_cases.py --base http://127.0.0.1:PORT [--cases a,b]

Each upload mints its own signed URL with POST {base}/upload-url
{"filename": ...} and takes the answered "signedUrl" as the tus endpoint
(TusClient(url)). One JSON line per case on stdout: client, case, ok,
endpoint, url (the upload URL tuspy ended on), size and sha256 (of the bytes
it sent), ms. Exit status 1 if a case failed. Every request has a timeout,
every case a deadline; 127.0.0.1 only.
"""

import argparse
import hashlib
import io
import json
import random
import signal
import sys
import time
import urllib.request
from urllib.parse import urlparse

import requests
from tusclient import client as tus_client
from tusclient.exceptions import TusCommunicationError, TusUploadFailed

REQUEST_TIMEOUT_S = 20
CASE_DEADLINE_S = 60
CHUNK = 65536

# tuspy passes no timeout to requests: give every request one, and keep what
# was sent and answered so a case can check the wire.
WIRE = []
_orig_request = requests.sessions.Session.request


def _request(self, method, url, **kw):
    kw.setdefault("timeout", REQUEST_TIMEOUT_S)
    entry = {"method": method.upper(), "headers": {k.lower(): v for k, v in (kw.get("headers") or {}).items()}}
    WIRE.append(entry)
    res = _orig_request(self, method, url, **kw)
    entry["status"] = res.status_code
    entry["offset"] = res.headers.get("Upload-Offset")
    return res


requests.sessions.Session.request = _request


def data_for(name, size):
    rnd = random.Random(name)
    return bytes(rnd.getrandbits(8) for _ in range(size))


def mint(base, filename):
    req = urllib.request.Request(
        f"{base}/upload-url",
        data=json.dumps({"filename": filename}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT_S) as r:
        return json.loads(r.read())["signedUrl"]


class WireError(Exception):
    pass


def expect(cond, what):
    if not cond:
        methods = " ".join(f"{e['method']}:{e.get('status')}" for e in WIRE)
        raise WireError(f"{what}; requests: {methods}")


# ---- cases: each returns (endpoint, url, data)
def case_whole(base):
    data = data_for("tuspy-whole", 200_000)
    endpoint = mint(base, "tuspy-whole.bin")
    up = tus_client.TusClient(endpoint).uploader(
        file_stream=io.BytesIO(data), metadata={"filename": "tuspy-whole.bin", "filetype": "application/octet-stream"}
    )
    up.upload()
    return endpoint, up.url, data


def case_checksum(base):
    data = data_for("tuspy-checksum", 200_000)
    endpoint = mint(base, "tuspy-checksum.bin")
    up = tus_client.TusClient(endpoint).uploader(
        file_stream=io.BytesIO(data), chunk_size=CHUNK, upload_checksum=True, metadata={"filename": "tuspy-checksum.bin"}
    )
    up.upload()
    patches = [e for e in WIRE if e["method"] == "PATCH"]
    expect(len(patches) == 4, "four appends")
    expect(all(e["headers"].get("upload-checksum", "").startswith("sha1 ") for e in patches), "sha1 on every append")
    return endpoint, up.url, data


def case_no_metadata(base):
    data = data_for("tuspy-nometa", 100_000)
    endpoint = mint(base, "tuspy-nometa.bin")
    up = tus_client.TusClient(endpoint).uploader(file_stream=io.BytesIO(data))
    up.upload()
    post = next(e for e in WIRE if e["method"] == "POST")
    expect(post["headers"].get("upload-metadata") == "", "an empty Upload-Metadata on the creation")
    return endpoint, up.url, data


def case_resume_url(base):
    data = data_for("tuspy-resume", 200_000)
    endpoint = mint(base, "tuspy-resume.bin")
    client = tus_client.TusClient(endpoint)
    first = client.uploader(file_stream=io.BytesIO(data), chunk_size=CHUNK)
    first.upload_chunk()
    expect(first.offset == CHUNK, "the first uploader stored one chunk")
    before = len(WIRE)
    second = client.uploader(file_stream=io.BytesIO(data), chunk_size=CHUNK, url=first.url)
    expect(second.offset == CHUNK, f"the second uploader (url=) read offset {second.offset} by HEAD")
    second.upload()
    later = WIRE[before:]
    expect(later[0]["method"] == "HEAD" and not any(e["method"] == "POST" for e in later), "a HEAD, no creation")
    return endpoint, second.url, data


def case_odd_name(base):
    # a name whose signed path carries percent-escapes and sub-delimiters
    data = data_for("tuspy-odd", 70_000)
    endpoint = mint(base, "tuspy d'été (1) ~!*[x] 100%.bin")
    up = tus_client.TusClient(endpoint).uploader(file_stream=io.BytesIO(data), chunk_size=CHUNK)
    up.upload()
    return endpoint, up.url, data


def case_empty(base):
    data = b""
    endpoint = mint(base, "tuspy-empty.bin")
    up = tus_client.TusClient(endpoint).uploader(file_stream=io.BytesIO(data))
    up.upload()
    return endpoint, up.url, data


CASES = {
    "whole": case_whole,
    "checksum-sha1": case_checksum,
    "no-metadata": case_no_metadata,
    "resume-url": case_resume_url,
    "odd-name": case_odd_name,
    "empty": case_empty,
}


class Deadline(Exception):
    pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--cases", default=",".join(CASES))
    args = ap.parse_args()
    if urlparse(args.base).hostname != "127.0.0.1":
        sys.exit("the base URL must be on 127.0.0.1")
    base = args.base.rstrip("/")

    def on_alarm(signum, frame):
        raise Deadline(f"case over its {CASE_DEADLINE_S} s deadline")

    signal.signal(signal.SIGALRM, on_alarm)
    failed = 0
    for name in args.cases.split(","):
        fn = CASES[name]
        out = {"client": "tuspy", "case": name}
        WIRE.clear()
        started = time.monotonic()
        signal.alarm(CASE_DEADLINE_S)
        try:
            endpoint, url, data = fn(base)
            out.update(ok=True, endpoint=endpoint, url=url, size=len(data), sha256=hashlib.sha256(data).hexdigest())
        except (TusCommunicationError, TusUploadFailed, Deadline, WireError, requests.RequestException, OSError) as e:
            failed += 1
            status = getattr(e, "status_code", None)
            out.update(ok=False, error=f"{type(e).__name__}: status {status}: {str(e)[:400]}")
        finally:
            signal.alarm(0)
        out["ms"] = round((time.monotonic() - started) * 1000)
        print(json.dumps(out), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
