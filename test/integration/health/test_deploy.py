"""
deploy/ checked offline (issue 12): the Kubernetes manifests' structure
(python3-yaml), their agreement with the ConfigMap's Portico config (ports,
probe paths, drain time, workers vs CPU), the Dockerfile's shape, and the
config-sync script for real: it renders the ConfigMap's template, the result
validates and runs, the probe paths answer, and a changed template reloads a
running Portico (an invalid one does not).
"""
import http.client
import os
import re
import subprocess
import tempfile
import time
import unittest

import yaml

from hc_support import wait_until
from portico_test import BIN, ROOT, Portico, free_port, wait_port

DEPLOY = os.path.join(ROOT, "deploy")
K8S = os.path.join(DEPLOY, "kubernetes")
SYNC = os.path.join(DEPLOY, "config-sync.sh")


def load_docs():
    docs = []
    with open(os.path.join(K8S, "kustomization.yaml")) as f:
        kust = yaml.safe_load(f)
    for name in kust["resources"]:
        with open(os.path.join(K8S, name)) as f:
            docs += [d for d in yaml.safe_load_all(f) if d]
    return docs


def find(docs, kind, name):
    hits = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(hits) == 1, (kind, name, len(hits))
    return hits[0]


def host_port(addr):
    return int(addr.rsplit(":", 1)[1])


def seconds(d):
    m = re.fullmatch(r"(\d+)(ms|s|m)", str(d))
    n, unit = int(m.group(1)), m.group(2)
    return n / 1000 if unit == "ms" else n * 60 if unit == "m" else n


class ManifestTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.docs = load_docs()
        cls.cm = find(cls.docs, "ConfigMap", "portico-config")
        cls.conf = yaml.safe_load(cls.cm["data"]["portico.yaml"])
        cls.dep = find(cls.docs, "Deployment", "portico")
        cls.pod = cls.dep["spec"]["template"]["spec"]
        cls.main = [c for c in cls.pod["containers"] if c["name"] == "portico"][0]

    def test_every_document_has_the_required_fields(self):
        for d in self.docs:
            for k in ("apiVersion", "kind", "metadata"):
                self.assertIn(k, d)
            self.assertRegex(d["metadata"]["name"], r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
        for dep in (d for d in self.docs if d["kind"] == "Deployment"):
            spec = dep["spec"]
            labels = spec["template"]["metadata"]["labels"]
            for k, v in spec["selector"]["matchLabels"].items():
                self.assertEqual(labels.get(k), v, dep["metadata"]["name"])
            for c in spec["template"]["spec"]["containers"]:
                for k in ("name", "image", "resources"):
                    self.assertIn(k, c)
        for svc in (d for d in self.docs if d["kind"] == "Service"):
            pods = [d for d in self.docs if d["kind"] == "Deployment" and all(
                d["spec"]["template"]["metadata"]["labels"].get(k) == v
                for k, v in svc["spec"]["selector"].items())]
            self.assertEqual(len(pods), 1, svc["metadata"]["name"])
            names = {p["name"]: p["containerPort"] for c in pods[0]["spec"]["template"]["spec"]["containers"]
                     for p in c.get("ports", [])}
            for p in svc["spec"]["ports"]:
                self.assertIn(p["targetPort"], names, svc["metadata"]["name"])

    def test_ports_and_probes_match_the_config(self):
        ports = {p["name"]: p["containerPort"] for p in self.main["ports"]}
        self.assertEqual(ports["http"], host_port(self.conf["listeners"][0]["address"]))
        self.assertEqual(ports["admin"], host_port(self.conf["admin"]["address"]))
        rp, lp = self.main["readinessProbe"]["httpGet"], self.main["livenessProbe"]["httpGet"]
        self.assertEqual((rp["path"], rp["port"]), ("/ready", "admin"))
        self.assertEqual((lp["path"], lp["port"]), ("/healthz", "admin"))
        self.assertTrue(self.conf["admin"]["address"].startswith("0.0.0.0:"))  # kubelet reaches the pod IP
        self.assertIn("token_file", self.conf["admin"])  # then everything but the probes needs the token

    def test_shutdown_budget_covers_prestop_and_drain(self):
        cmd = self.main["lifecycle"]["preStop"]["exec"]["command"]
        self.assertEqual(cmd[0], "/bin/sleep")
        pre = int(cmd[1])
        drain = seconds(self.conf["timeouts"]["drain"])
        self.assertGreater(pre, 0)
        self.assertGreaterEqual(self.pod["terminationGracePeriodSeconds"], pre + drain + 1)

    def test_resources_workers_and_overload_agree(self):
        res = self.main["resources"]
        self.assertEqual(self.conf["workers"], int(res["limits"]["cpu"]))
        mem = lambda s: int(s[:-2]) * {"Mi": 1 << 20, "Gi": 1 << 30}[s[-2:]]
        wm = self.conf["overload"]["memory"]
        wm = int(wm[:-1]) * (1 << 20) if wm.endswith("m") else int(wm)
        self.assertLess(wm, mem(res["limits"]["memory"]))
        self.assertLessEqual(mem(res["requests"]["memory"]), mem(res["limits"]["memory"]))

    def test_config_volume_and_sidecar(self):
        vols = {v["name"]: v for v in self.pod["volumes"]}
        self.assertEqual(vols["config-template"]["configMap"]["name"], "portico-config")
        mounts = {m["name"]: m["mountPath"] for m in self.main["volumeMounts"]}
        self.assertEqual(self.main["args"], ["-c", mounts["config"] + "/portico.yaml"])
        self.assertTrue(self.pod["shareProcessNamespace"])  # the sidecar signals portico
        sync = [c for c in self.pod["containers"] if c["name"] == "config-sync"][0]
        self.assertEqual(sync["command"], ["/usr/local/bin/config-sync"])
        init = self.pod["initContainers"][0]
        self.assertEqual(init["command"], ["/usr/local/bin/config-sync", "--once"])
        # Redis: the Service the renderer resolves, on the port it fills in
        env = {e["name"]: e["value"] for e in sync["env"]}
        redis = find(self.docs, "Service", env["REDIS_HOST"])
        self.assertEqual(redis["spec"]["ports"][0]["port"], int(env["REDIS_PORT"]))
        self.assertEqual(self.conf["redis"]["shared"]["address"], "${REDIS_ADDR}")

    def test_non_root_everywhere_and_the_dockerfile(self):
        sc = self.pod["securityContext"]
        self.assertTrue(sc["runAsNonRoot"])
        with open(os.path.join(DEPLOY, "Dockerfile")) as f:
            df = f.read()
        froms = re.findall(r"^FROM (\S+)", df, re.M)
        self.assertEqual(froms, ["debian:12", "debian:12"])
        self.assertIn("scripts/install-deps.sh --build-only", df)
        user = re.findall(r"^USER (\S+)", df, re.M)
        self.assertEqual(user, ["%d:%d" % (sc["runAsUser"], sc["runAsGroup"])])
        self.assertIn("--uid %d" % sc["runAsUser"], df)
        self.assertIn('ENTRYPOINT ["/usr/local/bin/portico"]', df)
        # the build stage's list is install-deps.sh's own
        pk = subprocess.run(["bash", os.path.join(ROOT, "scripts", "install-deps.sh"), "--list",
                             "--build-only"], capture_output=True, text=True, check=True).stdout.split()
        self.assertIn("libnghttp2-dev", pk)
        self.assertNotIn("chromium", pk)


def get(port, path, token=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", path, headers={"Authorization": "Bearer " + token} if token else {})
    r = c.getresponse()
    r.read()
    c.close()
    return r.status


class ConfigSyncTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        d = self.tmp.name
        self.tpl = os.path.join(d, "template")
        self.out = os.path.join(d, "etc")
        os.mkdir(self.tpl)
        os.mkdir(self.out)
        cm = find(load_docs(), "ConfigMap", "portico-config")
        self.port, self.admin = free_port(), free_port()
        with open(os.path.join(d, "token"), "w") as f:
            f.write("t0ken-0123456789abcdef\n")
        text = cm["data"]["portico.yaml"]
        text = text.replace("0.0.0.0:8080", "127.0.0.1:%d" % self.port)
        text = text.replace("0.0.0.0:9901", "127.0.0.1:%d" % self.admin)
        text = text.replace("/etc/portico-admin/token", os.path.join(d, "token"))
        self.text = text.replace("workers: 2", "workers: 1")
        self.write_template(self.text)
        self.env = dict(os.environ, TEMPLATE_DIR=self.tpl, CONFIG=os.path.join(self.out, "portico.yaml"),
                        REDIS_HOST="localhost", REDIS_PORT="6390", PORTICO=BIN,
                        RELOAD_POLL_SECONDS="0.2")

    def write_template(self, text):
        with open(os.path.join(self.tpl, "portico.yaml.tmp"), "w") as f:
            f.write(text)
        os.rename(os.path.join(self.tpl, "portico.yaml.tmp"), os.path.join(self.tpl, "portico.yaml"))

    def test_render_run_probe_and_reload_on_change(self):
        r = subprocess.run(["sh", SYNC, "--once"], env=self.env, capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(self.env["CONFIG"]) as f:
            rendered = f.read()
        self.assertRegex(rendered, r'address: "(127\.0\.0\.1|\[::1\]):6390"')
        p = Portico(rendered, workers=1)
        self.addCleanup(p.stop)
        wait_port(self.port, 10, p.proc)
        wait_port(self.admin, 10, p.proc)
        # the probe paths the Deployment names, without a token; the rest needs it
        self.assertEqual(get(self.admin, "/ready"), 200)
        self.assertEqual(get(self.admin, "/healthz"), 200)
        self.assertEqual(get(self.admin, "/metrics"), 401)
        self.assertEqual(get(self.admin, "/metrics", "t0ken-0123456789abcdef"), 200)

        # the sidecar: a changed ConfigMap is validated, installed and reloaded
        cfg = p.config_path  # the file this portico reads (same text as rendered)
        before = p.output().count("configuration reloaded")
        env = dict(self.env, PORTICO_PID=str(p.proc.pid), CONFIG=cfg)
        sync = subprocess.Popen(["sh", SYNC], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)

        def stop_sync():
            sync.kill()
            sync.wait(5)
            sync.stdout.close()
        self.addCleanup(stop_sync)
        time.sleep(0.6)
        self.assertEqual(p.output().count("configuration reloaded"), before)  # unchanged: no reload
        self.write_template(self.text.replace("keepalive: 60s", "keepalive: 30s"))
        self.assertIsNotNone(wait_until(
            lambda: p.output().count("configuration reloaded") == before + 1, 10))
        self.write_template(self.text.replace("keepalive: 60s", "keepalive: often"))
        time.sleep(1.0)
        self.assertEqual(p.output().count("configuration reloaded"), before + 1)
        with open(cfg) as f:
            self.assertIn("keepalive: 30s", f.read())  # the bad one never replaced it
        self.assertEqual(get(self.admin, "/ready"), 200)


if __name__ == "__main__":
    unittest.main()
