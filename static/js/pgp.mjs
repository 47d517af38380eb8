// Module pgp is the client's OpenPGP layer: keys, key files, and signed messages with a reused session key.
//
// It runs inside the crypto Web Worker (worker.mjs) and under node's test runner. Everything it
// makes is standard OpenPGP that GnuPG 2.2 reads: v4 keys, SEIPD v1 (no AEAD), AES-256, no
// compression, iterated-and-salted S2K for the passphrase (never Argon2: it needs WebAssembly,
// which Tor Browser's "Safer" level disables). The one exception is the "v6" key type a user asks
// for: an RFC 9580 v6 key (Ed25519 + X25519), which GnuPG 2.2 and 2.4 cannot import.
import * as openpgp from '../vendor/openpgp.min.mjs';
import { pad, unpad } from './pad.mjs';
import { writeZip, readZip } from './zip.mjs';

export { openpgp };

export const CONFIG = Object.freeze({
  s2kType: openpgp.enums.s2k.iterated,
  aeadProtect: false,
  v6Keys: false,
  preferredSymmetricAlgorithm: openpgp.enums.symmetric.aes256,
  preferredCompressionAlgorithm: openpgp.enums.compression.uncompressed,
  showVersion: false,
  showComment: false,
});

// hasFastCurve25519 reports whether WebCrypto here does both Ed25519 and X25519. Without them
// OpenPGP.js falls back to pure-JS curve code, which is slow with the JIT disabled.
export async function hasFastCurve25519(subtle = globalThis.crypto?.subtle) {
  if (!subtle) return false;
  try {
    await subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify']);
    await subtle.generateKey({ name: 'X25519' }, false, ['deriveBits']);
    return true;
  } catch {
    return false;
  }
}

// KEY_TYPES are the key types generateKeyPair makes: RSA-4096, Curve25519 in the legacy v4 encoding
// GnuPG 2.2 reads, and an RFC 9580 v6 key with Ed25519 and X25519 (no GnuPG release reads it).
const KEY_TYPES = {
  rsa: { algo: { type: 'rsa', rsaBits: 4096 }, config: CONFIG },
  curve25519: { algo: { type: 'ecc', curve: 'curve25519Legacy' }, config: CONFIG },
  v6: { algo: { type: 'curve25519' }, config: Object.freeze({ ...CONFIG, v6Keys: true }) },
};

// generateKeyPair makes an unlocked private key of one of KEY_TYPES, RSA-4096 by default.
export async function generateKeyPair({ type = 'rsa', name = 'cleanrelay user', email } = {}) {
  const kt = Object.hasOwn(KEY_TYPES, type) ? KEY_TYPES[type] : null;
  if (!kt) throw new Error(`failed to generate key: unknown type ${type}`);
  const userID = email ? { name, email } : { name };
  const { privateKey } = await openpgp.generateKey({ ...kt.algo, userIDs: [userID], format: 'object', config: kt.config });
  return privateKey;
}

// lockKey returns the armored private key encrypted with passphrase.
export async function lockKey(privateKey, passphrase) {
  if (!passphrase) throw new Error('failed to protect key: empty passphrase');
  const locked = await openpgp.encryptKey({ privateKey, passphrase, config: CONFIG });
  return locked.armor(CONFIG);
}

// unlockKey reads an armored, passphrase-protected private key and decrypts it. A wrong
// passphrase throws an Error whose message starts with "wrong passphrase".
export async function unlockKey(armoredKey, passphrase) {
  const key = await openpgp.readPrivateKey({ armoredKey, config: CONFIG });
  if (key.isDecrypted()) return key;
  try {
    return await openpgp.decryptKey({ privateKey: key, passphrase, config: CONFIG });
  } catch (e) {
    throw new Error(`wrong passphrase: failed to unlock key: ${e.message}`);
  }
}

export async function readPublicKey(armoredKey) {
  const key = await openpgp.readKey({ armoredKey, config: CONFIG });
  if (key.isPrivate()) return key.toPublic();
  return key;
}

// fingerprint returns the key's fingerprint as upper-case hex in groups of four.
export function fingerprint(key) {
  return formatFingerprint(key.getFingerprint());
}

export function formatFingerprint(hex) {
  return hex.toUpperCase().match(/.{1,4}/g).join(' ');
}

// keyInfo describes a key for the user: algorithm, size or curve, OpenPGP key version (4 or 6),
// creation time, fingerprint (40 hex digits for v4, 64 for v6).
export function keyInfo(key) {
  const a = key.getAlgorithmInfo();
  const version = key.keyPacket.version;
  let algorithm = a.algorithm;
  if (a.algorithm.startsWith('rsa')) algorithm = 'RSA';
  else if (version === 6 && a.algorithm === 'ed25519') algorithm = 'Ed25519/X25519 (OpenPGP v6)';
  else if (a.algorithm.startsWith('eddsa') || a.algorithm === 'ed25519') algorithm = 'Curve25519 (EdDSA/ECDH)';
  return {
    algorithm,
    version,
    bits: a.bits || null,
    curve: a.curve || null,
    created: key.getCreationTime().toISOString(),
    fingerprint: fingerprint(key),
    userIDs: key.getUserIDs(),
    armored: key.toPublic().armor(CONFIG),
  };
}

// safetyCode derives a code from two fingerprints that both sides compute the same: six groups
// of five digits (about 100 bits) of SHA-256 over the sorted fingerprints.
export async function safetyCode(fpA, fpB) {
  const norm = (f) => f.replace(/\s+/g, '').toUpperCase();
  const [x, y] = [norm(fpA), norm(fpB)].sort();
  const h = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(`cleanrelay-safety-v1:${x}:${y}`)));
  const groups = [];
  for (let i = 0; i < 30; i += 5) {
    let n = 0;
    for (let j = 0; j < 5; j++) n = n * 256 + h[i + j];
    groups.push(String(n % 100000).padStart(5, '0'));
  }
  return groups.join(' ');
}

// signDetached returns an armored detached signature over the UTF-8 bytes of text (a proof of
// possession for the key directory, docs/accounts.md §5).
export async function signDetached(privateKey, text) {
  const message = await openpgp.createMessage({ binary: new TextEncoder().encode(text) });
  return openpgp.sign({ message, signingKeys: privateKey, detached: true, format: 'armored', config: CONFIG });
}

// exportZip returns a ZIP with the armored public key and the passphrase-protected private key.
export async function exportZip(privateKey, passphrase) {
  const fp = privateKey.getFingerprint().toUpperCase();
  const elsewhere = privateKey.keyPacket.version === 6
    ? 'This is an OpenPGP v6 key (RFC 9580): GnuPG 2.2 and 2.4 cannot import it. Import it into cleanrelay,\n' +
      'or into another RFC 9580 (OpenPGP v6) implementation.\n'
    : 'Import it into cleanrelay, or into GnuPG with:\n  gpg --import *-private.asc\n';
  const files = [
    { name: `cleanrelay-${fp.slice(-16)}-public.asc`, data: privateKey.toPublic().armor(CONFIG) },
    { name: `cleanrelay-${fp.slice(-16)}-private.asc`, data: await lockKey(privateKey, passphrase) },
    {
      name: 'README.txt',
      data: `cleanrelay key pair\nFingerprint: ${formatFingerprint(fp)}\nThe private key is encrypted with your passphrase. ${elsewhere}`,
    },
  ];
  return writeZip(files);
}

// importZip reads a key pair ZIP made by exportZip (or any stored ZIP with one armored private key
// and optionally its public key) and returns the unlocked private key.
export async function importZip(bytes, passphrase) {
  const files = readZip(bytes);
  const dec = new TextDecoder();
  let priv = null;
  let pub = null;
  for (const [name, data] of files) {
    const text = dec.decode(data);
    if (text.includes('-----BEGIN PGP PRIVATE KEY BLOCK-----')) {
      if (priv) throw new Error('failed to import key: the zip holds more than one private key');
      priv = text;
    } else if (text.includes('-----BEGIN PGP PUBLIC KEY BLOCK-----') && name.endsWith('.asc')) {
      pub = text;
    }
  }
  if (!priv) throw new Error('failed to import key: the zip holds no armored private key');
  const key = await unlockKey(priv, passphrase);
  if (pub) {
    const p = await readPublicKey(pub);
    if (p.getFingerprint() !== key.getFingerprint()) throw new Error('failed to import key: the public key does not match the private key');
  }
  return key;
}

// Sender encrypts and signs messages to a set of recipients. It reuses one session key until the
// recipient set changes, so that receivers can cache it; each message is still a complete
// OpenPGP message with a PKESK for every recipient, which any OpenPGP tool can decrypt.
export class Sender {
  constructor(privateKey) {
    this.key = privateKey;
    this.recipients = [privateKey.toPublic()];
    this.setID = privateKey.getFingerprint();
    this.sessionKey = null;
    this.rotations = 0;
  }

  // setRecipients sets the peers' public keys (the sender's own key is always added). A changed
  // set rotates the session key.
  setRecipients(peerKeys) {
    const all = [this.key.toPublic(), ...peerKeys];
    const id = all.map((k) => k.getFingerprint()).sort().join(',');
    if (id === this.setID) return false;
    this.recipients = all;
    this.setID = id;
    this.sessionKey = null;
    return true;
  }

  recipientFingerprints() {
    return this.recipients.map((k) => k.getFingerprint());
  }

  // encrypt pads data, signs it and encrypts it; it returns the binary OpenPGP message.
  async encrypt(data) {
    if (!this.sessionKey) {
      this.sessionKey = await openpgp.generateSessionKey({ encryptionKeys: this.recipients, config: CONFIG });
      this.rotations++;
    }
    const message = await openpgp.createMessage({ binary: pad(data), format: 'binary' });
    return openpgp.encrypt({
      message,
      encryptionKeys: this.recipients,
      signingKeys: this.key,
      sessionKey: this.sessionKey,
      format: 'binary',
      config: CONFIG,
    });
  }
}

// Receiver decrypts messages and verifies them against the sender's pinned key. It caches the
// last session key per sender, so that only the first message after a rotation pays for the
// private-key operation.
export class Receiver {
  constructor(privateKey) {
    this.key = privateKey;
    this.cache = new Map(); // sender fingerprint -> session key
  }

  forget(senderKey) {
    this.cache.delete(senderKey.getFingerprint());
  }

  // decrypt returns {data, verified, cached}. verified is false when the signature is missing,
  // made by another key than senderKey, or bad; the caller must show that. It throws when the
  // message cannot be decrypted at all or its padding is malformed.
  async decrypt(bytes, senderKey) {
    const fp = senderKey.getFingerprint();
    const cachedKey = this.cache.get(fp);
    let res = null;
    let cached = false;
    if (cachedKey) {
      try {
        const message = await openpgp.readMessage({ binaryMessage: bytes, config: CONFIG });
        res = await openpgp.decrypt({ message, sessionKeys: cachedKey, verificationKeys: senderKey, format: 'binary', config: CONFIG });
        cached = true;
      } catch {
        res = null; // rotated: fall back to our private key
      }
    }
    if (!res) {
      const message = await openpgp.readMessage({ binaryMessage: bytes, config: CONFIG });
      let sessionKeys;
      try {
        sessionKeys = await openpgp.decryptSessionKeys({ message, decryptionKeys: this.key, config: CONFIG });
      } catch (e) {
        throw new Error(`failed to decrypt message: ${e.message}`);
      }
      res = await openpgp.decrypt({ message, sessionKeys: sessionKeys[0], verificationKeys: senderKey, format: 'binary', config: CONFIG });
      this.cache.set(fp, sessionKeys[0]);
    }
    let verified = false;
    if (res.signatures.length === 1) {
      try {
        verified = (await res.signatures[0].verified) === true;
      } catch {
        verified = false;
      }
    }
    return { data: unpad(res.data), verified, cached };
  }
}
