// How a tenant verifies wasmhook deliveries in Node.js with `jose` (npm i jose).
// JWE (optionally nested): decrypt with your private key; JWS: verify against wasmhook's JWKS.
import { createRemoteJWKSet, compactDecrypt, jwtVerify, importPKCS8 } from 'jose';

const jwks = createRemoteJWKSet(new URL('http://127.0.0.1:8080/.well-known/jwks.json'));
const privateKey = process.env.PRIVATE_KEY_PEM
  ? await importPKCS8(process.env.PRIVATE_KEY_PEM, 'RSA-OAEP-256')
  : null;

/** Returns the envelope of a delivery body (string), or throws. */
export async function verifyDelivery(body) {
  let token = body;
  if (token.split('.').length === 5) {
    const { plaintext, protectedHeader } = await compactDecrypt(token, privateKey);
    token = new TextDecoder().decode(plaintext);
    if (protectedHeader.cty !== 'JWT') return JSON.parse(token); // JWE of the plain envelope
  }
  const { payload } = await jwtVerify(token, jwks, { typ: 'JWT' });
  return payload; // the envelope plus iat and jti (= webhook-id)
}
