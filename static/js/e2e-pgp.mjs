// Module e2e-pgp lets an OpenPGP key be a protocol v2 identity (dialogs, docs/e2e.md §4): detached signatures over v2's signed bytes.
import { openpgp, CONFIG } from './pgp.mjs';

// PgpIdentity signs with an unlocked OpenPGP private key.
export class PgpIdentity {
  constructor(privateKey) {
    this.key = privateKey;
    this.pub = privateKey.toPublic();
  }

  async sign(msg) {
    const message = await openpgp.createMessage({ binary: msg });
    return openpgp.sign({ message, signingKeys: this.key, detached: true, format: 'binary', config: CONFIG });
  }

  verifier() {
    return new PgpVerifier(this.pub);
  }
}

// PgpVerifier checks a detached signature with a pinned OpenPGP public key.
export class PgpVerifier {
  constructor(publicKey) {
    this.key = publicKey;
  }

  async verify(msg, sig) {
    try {
      const message = await openpgp.createMessage({ binary: msg });
      const signature = await openpgp.readSignature({ binarySignature: sig, config: CONFIG });
      const { signatures } = await openpgp.verify({ message, signature, verificationKeys: this.key, expectSigned: false, config: CONFIG });
      return signatures.length === 1 && (await signatures[0].verified) === true;
    } catch {
      return false;
    }
  }
}
