# Allocation-heavy Python: dicts, lists, strings, json, threads.
import json, threading, hashlib
d = {str(i): [i, str(i) * (i % 13), {"k": i}] for i in range(100000)}
s = json.dumps(d, sort_keys=True)
back = json.loads(s)
out = []
def work(n):
    acc = []
    for i in range(20000):
        acc.append(("%d-%d" % (n, i)) * (i % 7))
    out.append((n, sum(len(a) for a in acc)))
ts = [threading.Thread(target=work, args=(n,)) for n in range(6)]
for t in ts: t.start()
for t in ts: t.join()
print(len(s), hashlib.sha256(s.encode()).hexdigest(), len(back), sorted(out))
