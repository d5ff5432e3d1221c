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

# subprocess (vfork or posix_spawn), then forks while two threads allocate:
# each child allocates, forks once more (the grandchild allocates too) and
# reports through its exit status; a child left waiting is killed by alarm.
import os, signal, subprocess
r = subprocess.run(["/bin/echo", "spawned"], capture_output=True, text=True)
stop = []
def churn():
    while not stop:
        x = {i: str(i) * 10 for i in range(2000)}
bg = [threading.Thread(target=churn) for _ in range(2)]
for t in bg: t.start()
codes = []
for k in range(20):
    pid = os.fork()
    if pid == 0:
        signal.alarm(20)
        v = sum(len(str(i) * 5) for i in range(20000))
        pid2 = os.fork()
        if pid2 == 0:
            os._exit(0 if sum(len(json.dumps({"a": [i] * 3})) for i in range(5000)) else 1)
        _, st2 = os.waitpid(pid2, 0)
        os._exit(0 if v and st2 == 0 else 1)
    _, st = os.waitpid(pid, 0)
    codes.append(st)
stop.append(1)
for t in bg: t.join()
print(r.stdout.strip(), codes.count(0), "children of", len(codes), "exited 0")
