"""Wait (up to 60 s) until URL answers with STATUS; print it. Exit 1 when it never does.

    python3 dev/http_status.py http://127.0.0.1:8000/ 200
(dev/gpu-e2e.sh: the GPU host may have no curl.)"""
import sys
import time
import urllib.error
import urllib.request

url, want = sys.argv[1], int(sys.argv[2])
got: object = None
for _ in range(60):
    try:
        got = urllib.request.urlopen(url, timeout=5).status
    except urllib.error.HTTPError as e:
        got = e.code
    except OSError as e:
        got = e
    if got == want:
        print(f"{url}: {got}")
        sys.exit(0)
    time.sleep(1)
print(f"{url}: never {want} (last: {got})")
sys.exit(1)
