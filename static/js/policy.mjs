// Module policy checks account passwords and key passphrases against the project's policy (docs/accounts.md §3).

// LONG_PASSPHRASE is the length from which a key passphrase needs no character classes: a few words are
// stronger than eight mixed characters and easier to remember. Account passwords keep the class rule
// (the relay checks it too).
export const LONG_PASSPHRASE = 15;

// missing returns the names of the password rules p fails: "length", "upper", "lower", "digit", "special"
// (at least 8 characters with an upper-case letter, a lower-case letter, a digit and a special character).
// An empty array means p is acceptable.
export function missing(p) {
  const out = [];
  const s = String(p ?? '');
  if ([...s].length < 8) out.push('length');
  if (!/\p{Lu}/u.test(s)) out.push('upper');
  if (!/\p{Ll}/u.test(s)) out.push('lower');
  if (!/\p{Nd}/u.test(s)) out.push('digit');
  if (!/[^\p{L}\p{Nd}]/u.test(s)) out.push('special'); // anything not a letter or digit, a space too, as the relay counts
  return out;
}

// missingPassphrase is missing for a key passphrase: one of LONG_PASSPHRASE or more characters (not counting
// spaces at either end) passes whatever characters it has; a shorter one needs the password rules.
export function missingPassphrase(p) {
  const s = String(p ?? '');
  if ([...s.trim()].length >= LONG_PASSPHRASE) return [];
  return missing(s);
}
