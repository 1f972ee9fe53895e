"""
A filter loaded from a shared object into the real binary: the example
plugin examples/plugins/require_header.c (built as build/lib/pt_require_header.so).
"""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

from portico_test import PorticoTestCase, curl, free_port, BIN

PLUGIN = os.path.join(os.path.dirname(os.path.dirname(BIN)), "lib", "pt_require_header.so")


class PluginTest(PorticoTestCase):
    def test_require_header_plugin(self):
        up = self.echo()
        port = free_port()
        self.start(f"""
listeners: [ {{ address: "127.0.0.1:{port}" }} ]
plugins: [ {{ path: "{PLUGIN}" }} ]
clusters: [ {{ name: web, endpoints: [ "127.0.0.1:{up.port}" ] }} ]
routes:
  - match: {{ prefix: / }}
    proxy: {{ cluster: web }}
    filters:
      - headers: {{ response: {{ add: {{ x-outer: "1" }} }} }}
      - require_header: {{ name: x-api-version, values: [ "2", "2.1" ] }}
""", port)
        url = f"http://127.0.0.1:{port}/v"
        st, h, body, _ = curl(url)
        self.assertEqual(st, 400)
        self.assertEqual(h.get("content-type"), "application/json")
        err = json.loads(body)["error"]
        self.assertEqual(err["code"], "INVALID")
        self.assertEqual(err["message"], "header x-api-version is required")
        self.assertEqual(err["request_id"], h.get("x-request-id"))
        self.assertEqual(h.get("x-outer"), "1")  # local replies pass the response filters
        # a value outside the list is refused for that reason, not for a missing header
        st, h, body, _ = curl(url, "-H", "X-Api-Version: 3")
        self.assertEqual(st, 400)
        self.assertEqual(json.loads(body)["error"]["message"],
                         "header x-api-version has a value not allowed")
        self.assertEqual(h.get("x-outer"), "1")
        self.assertEqual(up.requests, [])  # neither refusal reached the upstream
        st, h, body, _ = curl(url, "-H", "X-Api-Version: 2.1")
        self.assertEqual(st, 200)
        self.assertEqual(json.loads(body)["path"], "/v")
        self.assertEqual(len(up.requests), 1)
        self.assertEqual(up.requests[0]["headers"].get("x-api-version"), "2.1")

    def test_plugin_config_errors(self):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d, True)
        cfg = os.path.join(d, "p.yaml")
        with open(cfg, "w") as f:
            f.write(f"""listeners: [ {{ address: "127.0.0.1:1" }} ]
plugins: [ {{ path: "{PLUGIN}" }} ]
routes:
  - match: {{ prefix: / }}
    respond: {{ status: 200 }}
    filters:
      - require_header: {{ name: "bad name", valuez: [] }}
""")
        p = subprocess.run([BIN, "--validate", "-c", cfg], capture_output=True, text=True)
        self.assertEqual(p.returncode, 1)
        self.assertRegex(p.stderr, r"p\.yaml:7:\d+: .*valuez")
        with open(cfg, "w") as f:
            f.write(f"""listeners: [ {{ address: "127.0.0.1:1" }} ]
plugins: [ {{ path: "{d}/missing.so" }} ]
routes: []
""")
        p = subprocess.run([BIN, "--validate", "-c", cfg], capture_output=True, text=True)
        self.assertEqual(p.returncode, 1)
        self.assertRegex(p.stderr, r"p\.yaml:2:\d+: .*missing\.so")


if __name__ == "__main__":
    unittest.main()
