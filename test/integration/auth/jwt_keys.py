"""
jwt_keys.py -- keys and tokens for the jwt filter's tests, made with Debian's
python3-jwt and python3-cryptography; the tokens libraries refuse to make
(alg none, HS256 keyed with a public key PEM, tampered parts) by hand.
"""
import base64
import hashlib
import hmac
import json
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

ISSUER = "https://idp.test/"
AUDIENCE = "api"
SECRET = b"s3cr3t-for-hs-tests-0123456789abcdef-XYZ"


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Keys:
    """One private key per algorithm family, with kids, and their public JWK set."""

    def __init__(self, prefix=""):
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.p256 = ec.generate_private_key(ec.SECP256R1())
        self.p384 = ec.generate_private_key(ec.SECP384R1())
        self.ed = ed25519.Ed25519PrivateKey.generate()
        self.prefix = prefix

    def kid(self, name):
        return self.prefix + name

    def jwks(self):
        # PyJWT 2.6 (Debian 12) writes EC coordinates in their minimal bytes: about one set in
        # 64 has a short one (RFC 7518 wants the full size). Portico reads them as the integers
        # they are (jwt_token.c); refusing them refused the whole set -- the rotation flake.
        keys = []
        for name, key, algo in (("rsa", self.rsa, RSAAlgorithm), ("p256", self.p256, ECAlgorithm),
                                ("p384", self.p384, ECAlgorithm), ("ed", self.ed, OKPAlgorithm)):
            k = json.loads(algo.to_jwk(key.public_key()))
            k["kid"] = self.kid(name)
            k["use"] = "sig"
            keys.append(k)
        return {"keys": keys}

    def private_for(self, alg):
        if alg.startswith(("RS", "PS")):
            return self.rsa, self.kid("rsa")
        if alg == "ES256":
            return self.p256, self.kid("p256")
        if alg == "ES384":
            return self.p384, self.kid("p384")
        if alg == "EdDSA":
            return self.ed, self.kid("ed")
        raise ValueError(alg)

    def rsa_public_pem(self):
        return self.rsa.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)


def claims(**over):
    now = int(time.time())
    c = {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600}
    for k, v in over.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return c


def token(keys, alg, kid=True, **over):
    """A token signed by `keys` (or SECRET for HS*)."""
    if alg.startswith("HS"):
        return jwt.encode(claims(**over), SECRET, algorithm=alg)
    key, k = keys.private_for(alg)
    headers = {"kid": k} if kid is True else ({"kid": kid} if kid else None)
    return jwt.encode(claims(**over), key, algorithm=alg, headers=headers)


def raw_token(header, payload, sign):
    """A token assembled by hand: sign(signing_input bytes) -> signature bytes."""
    si = (b64u(json.dumps(header).encode()) + "." + b64u(json.dumps(payload).encode())).encode()
    return si.decode() + "." + b64u(sign(si))


def hs256_with(secret):
    return lambda si: hmac.new(secret, si, hashlib.sha256).digest()
