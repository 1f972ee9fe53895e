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
