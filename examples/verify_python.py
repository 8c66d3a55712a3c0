"""How a tenant verifies wasmhook deliveries in Python with joserfc (pip install joserfc).

JWE (optionally nested): decrypt with your private key; JWS: verify against wasmhook's JWKS.
"""
import json
import urllib.request

from joserfc import jwe, jwt
from joserfc.jwk import KeySet, RSAKey

JWKS_URL = "http://127.0.0.1:8080/.well-known/jwks.json"


def verify_delivery(body: str, private_key_pem: bytes | None = None) -> dict:
    """Returns the envelope of a delivery body, or raises."""
    token = body
    if token.count(".") == 4:
        key = RSAKey.import_key(private_key_pem)
        obj = jwe.decrypt_compact(token, key, algorithms=["RSA-OAEP-256", "A256GCM"])
        token = obj.plaintext.decode()
        if obj.protected.get("cty") != "JWT":
            return json.loads(token)
    with urllib.request.urlopen(JWKS_URL) as response:
        keys = KeySet.import_key_set(json.load(response))
    claims = jwt.decode(token, keys, algorithms=["ES256", "RS256", "PS256", "EdDSA"]).claims
    return claims  # the envelope plus iat and jti (= webhook-id)
