#!/usr/bin/env bash
# A large-model round over TLS on loopback with the real binaries: 5 enrolled clients, each
# streaming an update of M parameters from a .safetensors file, and a server that stages
# uploads on disk. Prints each process's peak RSS (/usr/bin/time -v) and the server's
# summary, then checks the written sum against the plaintext sum of the updates (NumPy).
#   cargo build --release && M=100000000 benches/large_round.sh
# Needs python3 with numpy (PYTHON=...), about 7·M bytes of disk in $WORK (default a temp
# dir) and GNU time.
set -euo pipefail
M=${M:-100000000}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/target/release/secagg"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
WORK="${WORK:-$(mktemp -d)}"
cd "$WORK"
echo "working in $WORK"
rm -rf ca clients tls *.safetensors sum.* summary.json time-*.txt spill
mkdir -p spill
$BIN ca new --out ca >/dev/null
$BIN enroll --ca-key ca/ca.key --id 0..5 --out clients >/dev/null
$BIN tls new --out tls >/dev/null
"$PY" - "$M" <<'PY'
import json, struct, sys
import numpy as np
m = int(sys.argv[1])
def write(path, values):
    header = json.dumps({"w": {"dtype": "F32", "shape": [m], "data_offsets": [0, 4 * m]}}).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)))
        f.write(header)
        f.write(values.astype("<f4").tobytes())
write("global.safetensors", np.zeros(m, np.float32))
rng = np.random.default_rng(7)
for i in range(5):
    write(f"update{i}.safetensors", (rng.standard_normal(m, dtype=np.float32) * 0.3))
PY
/usr/bin/time -v -o time-server.txt $BIN server --listen 127.0.0.1:7311 --clients 5 --threshold 4 \
    --ca ca/ca.pub --model global.safetensors --tls-cert tls/server.pem --tls-key tls/server.key \
    --output sum.safetensors --summary summary.json --backend cpu --deadline-ms 600000 \
    --spill-dir spill 2> server.log &
SERVER=$!
sleep 1
for i in 0 1 2 3 4; do
  /usr/bin/time -v -o time-client$i.txt $BIN client --connect localhost:7311 --tls-ca tls/ca.pem --id $i \
      --input update$i.safetensors --ca ca/ca.pub --key clients/client-$i.key \
      --cert clients/client-$i.cert --min-cohort 4 2> client$i.log &
done
wait
for f in time-*.txt; do echo "$f: $(grep -E 'Maximum resident|Elapsed' $f | tr '\n' ' ')"; done
tail -2 server.log
"$PY" -c "import json; s=json.load(open('summary.json')); print({k: s[k] for k in ['status','included','peak_rss_bytes','cpu_s','elapsed_s','uploads_staged_on_disk','bytes_received']})"
"$PY" - "$M" <<'PY'
import json, struct, sys
import numpy as np
m = int(sys.argv[1])
def read(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        f.read(n)
        return np.frombuffer(f.read(), dtype="<f4")
s = json.load(open("summary.json"))
want = np.zeros(m, np.float64)
for i in s["included"]:
    want += np.clip(read(f"update{i}.safetensors").astype(np.float64), -1, 1)
got = read("sum.safetensors").astype(np.float64)
err = np.abs(got - want).max()
# q = 2^16 levels on [-1, 1] unless the server chose fewer: one step per included client.
print(f"max |sum - plaintext| = {err:.3g} over {m} values, {len(s['included'])} clients")
PY
rm -f "$WORK"/*.safetensors   # the updates and the sum: 6·M·4 bytes
