"""What every bench script shares (bench/*.py import it as `benchlib`; they run as
`python3 bench/NAME.py`, so this directory is on sys.path)."""
import shutil
import signal
import subprocess


def stop_all(procs, tmpdir=None):
    """Stops the processes a bench started (SIGTERM, then SIGKILL after 10 s) and removes
    its temporary directory."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
    if tmpdir is not None:
        shutil.rmtree(tmpdir, ignore_errors=True)


def callgrind_per_request(pid, cmd, n, outdir, name, warmup=200, keep=None):
    """User-space instructions per request of the process `pid` running under
    `valgrind --tool=callgrind --callgrind-out-file=OUTDIR/cg.out`: `cmd` (an h2load
    command line without -n) runs `warmup` requests, the counters are zeroed, it runs
    `n` requests, and the dump made right after is read. `keep`: a path to copy the
    dump to (for callgrind_annotate)."""
    import glob
    import os
    from proxy_bench import parse_h2load
    subprocess.run(cmd + ["-n", str(warmup)], capture_output=True, timeout=300)  # caches, pools
    subprocess.run(["callgrind_control", "-z", str(pid)], capture_output=True, check=True)
    out = subprocess.run(cmd + ["-n", str(n)], capture_output=True, text=True, timeout=600).stdout
    before = set(glob.glob(os.path.join(outdir, "cg.out.*")))
    subprocess.run(["callgrind_control", "-d", str(pid)], capture_output=True, check=True)
    new = set(glob.glob(os.path.join(outdir, "cg.out.*"))) - before
    _, ok, errs = parse_h2load(out)
    if errs or ok != n or len(new) != 1:
        raise RuntimeError(f"{name}: {ok}/{n} answered, {errs} failed")
    path = new.pop()
    if keep:
        shutil.copy(path, keep)
    with open(path) as f:
        return [int(x.split()[1]) for x in f if x.startswith("totals:")][0] / n
