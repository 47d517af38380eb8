// Module policy checks passwords and passphrases against the project's policy (docs/accounts.md §3):
// at least 8 characters with an upper-case letter, a lower-case letter, a digit and a special character.

// missing returns the names of the rules p fails: "length", "upper", "lower", "digit", "special".
// An empty array means p is acceptable.
export function missing(p) {
  const out = [];
  const s = String(p ?? '');
  if ([...s].length < 8) out.push('length');
  if (!/\p{Lu}/u.test(s)) out.push('upper');
  if (!/\p{Ll}/u.test(s)) out.push('lower');
  if (!/\p{Nd}/u.test(s)) out.push('digit');
  if (!/[^\p{L}\p{Nd}\s]/u.test(s)) out.push('special');
  return out;
}
