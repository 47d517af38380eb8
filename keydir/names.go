package keydir

import (
	"fmt"
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// Username rules. After normalization (Unicode NFKC, then full case folding, then
// NFKC again) a username is 3 to 32 characters of the alphabet a-z 0-9 . _ -,
// starts and ends with a letter or digit, and has no two punctuation characters in
// a row. Input with control characters, spaces or invisible characters (format
// characters such as U+200B, variation selectors, fillers) is refused, never
// silently cleaned, so a name cannot hide a character that the person reading it
// does not see. The alphabet is ASCII on purpose: names are how users find each
// other's keys, and mixed-script look-alikes ("аlice" with a Cyrillic а) would
// let one user pose as another.
const (
	MinUsernameLen = 3
	MaxUsernameLen = 32
	// maxUsernameInput bounds the work spent on a raw name before normalization.
	maxUsernameInput = 256

	MaxFullNameLen = 64 // runes

	MaxEmailLen = 254 // RFC 5321 path limit

	MinPasswordLen   = 8  // characters (runes)
	MaxPasswordBytes = 72 // bcrypt ignores everything after byte 72
)

var folder = cases.Fold()

// NormalizeUsername returns the canonical form of a username, under which
// uniqueness, login and search work. It returns an error wrapping
// ErrUsernameInvalid, with the reason, for a name that breaks the rules above.
func NormalizeUsername(s string) (string, error) {
	if len(s) > maxUsernameInput {
		return "", fmt.Errorf("%w: longer than %d characters", ErrUsernameInvalid, MaxUsernameLen)
	}
	if err := checkVisible(s, false); err != nil {
		return "", fmt.Errorf("%w: %v", ErrUsernameInvalid, err)
	}
	n := norm.NFKC.String(folder.String(norm.NFKC.String(s)))
	if err := checkUsernameAlphabet(n); err != nil {
		return "", fmt.Errorf("%w: %v", ErrUsernameInvalid, err)
	}
	return n, nil
}

// normalizePrefix normalizes a search prefix like a username, but allows it to be
// shorter and to end in punctuation.
func normalizePrefix(s string) (string, error) {
	bad := fmt.Errorf("%w: a search prefix is 1 to %d characters of a-z, 0-9, '.', '_' and '-'", ErrBadRequest, MaxUsernameLen)
	if len(s) > maxUsernameInput || checkVisible(s, false) != nil {
		return "", bad
	}
	n := norm.NFKC.String(folder.String(norm.NFKC.String(s)))
	if n == "" || len(n) > MaxUsernameLen {
		return "", bad
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return "", bad
		}
	}
	return n, nil
}

func checkUsernameAlphabet(n string) error {
	if n == "" {
		return fmt.Errorf("empty")
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '.' || c == '_' || c == '-':
			if i == 0 || i == len(n)-1 {
				return fmt.Errorf("must start and end with a letter or digit")
			}
			if p := n[i-1]; p == '.' || p == '_' || p == '-' {
				return fmt.Errorf("two punctuation characters in a row")
			}
		default:
			return fmt.Errorf("only letters a-z, digits 0-9, '.', '_' and '-' are allowed")
		}
	}
	if len(n) < MinUsernameLen || len(n) > MaxUsernameLen {
		return fmt.Errorf("must be %d to %d characters long", MinUsernameLen, MaxUsernameLen)
	}
	return nil
}

// checkVisible refuses invalid UTF-8, control characters and invisible
// characters. Plain spaces are allowed only when allowSpace is set (full names).
func checkVisible(s string, allowSpace bool) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("not valid UTF-8")
	}
	for _, r := range s {
		switch {
		case unicode.IsControl(r):
			return fmt.Errorf("contains a control character (U+%04X)", r)
		case r == ' ' && allowSpace:
		case unicode.IsSpace(r) || unicode.In(r, unicode.Zs, unicode.Zl, unicode.Zp):
			return fmt.Errorf("contains a space (U+%04X)", r)
		case isInvisible(r):
			return fmt.Errorf("contains an invisible character (U+%04X)", r)
		}
	}
	return nil
}

// isInvisible reports characters that render as nothing, or as nothing anyone can
// be sure of: format characters (Cf: zero-width space and joiners, soft hyphen,
// bidi controls, BOM), variation selectors, every other default-ignorable code
// point (the combining grapheme joiner, the Hangul fillers, Khmer inherent
// vowels…), the Braille blank, and code points that are unassigned, private use
// or noncharacters (no font shows them the same way, if at all).
func isInvisible(r rune) bool {
	switch {
	case unicode.Is(unicode.Cf, r), unicode.Is(unicode.Variation_Selector, r),
		unicode.Is(unicode.Other_Default_Ignorable_Code_Point, r):
		return true
	case r == 0x034F, r == 0x115F, r == 0x1160, r == 0x3164, r == 0xFFA0, r == 0x2800, r == 0x180E:
		return true
	case !unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S, unicode.Z, unicode.Cc):
		return true // unassigned (Cn), private use (Co), surrogates (Cs)
	}
	return false
}

// maxMarksInRow bounds combining marks on one character of a full name: more stack
// into a smear that can hide or fake other text.
const maxMarksInRow = 3

// normalizeFullName trims surrounding spaces, applies NFC and checks the length
// and characters of a display name.
func normalizeFullName(s string) (string, error) {
	if len(s) > 4*MaxFullNameLen+64 {
		return "", fmt.Errorf("%w: longer than %d characters", ErrFullNameInvalid, MaxFullNameLen)
	}
	if err := checkVisible(s, true); err != nil {
		return "", fmt.Errorf("%w: %v", ErrFullNameInvalid, err)
	}
	s = norm.NFC.String(strings.Trim(s, " "))
	if s == "" {
		return "", fmt.Errorf("%w: empty", ErrFullNameInvalid)
	}
	if strings.Contains(s, "  ") {
		return "", fmt.Errorf("%w: two spaces in a row", ErrFullNameInvalid)
	}
	if n := utf8.RuneCountInString(s); n > MaxFullNameLen {
		return "", fmt.Errorf("%w: %d characters, at most %d allowed", ErrFullNameInvalid, n, MaxFullNameLen)
	}
	marks, seen := 0, false
	for _, r := range s {
		if !unicode.Is(unicode.M, r) {
			marks, seen = 0, seen || r != ' '
			continue
		}
		if marks++; marks > maxMarksInRow || !seen {
			return "", fmt.Errorf("%w: more than %d combining marks on one character, or a mark on nothing", ErrFullNameInvalid, maxMarksInRow)
		}
	}
	return s, nil
}

// Skeleton returns the form under which two usernames look alike: after
// NormalizeUsername, "0" reads as "o" and "1" as "l", then "rn" as "m", "vv" as
// "w" and "cl" as "d" (the Latin look-alikes of Unicode's confusables list, UTS
// #39, within the username alphabet). A name whose skeleton is another account's
// is refused, so "rnallory", "ma11ory" and "mall0ry" cannot stand next to
// "mallory".
func Skeleton(normalized string) string {
	b := []byte(normalized)
	for i, c := range b {
		switch c {
		case '0':
			b[i] = 'o'
		case '1':
			b[i] = 'l'
		}
	}
	s := string(b)
	return skeletonPairs.Replace(s)
}

var skeletonPairs = strings.NewReplacer("rn", "m", "vv", "w", "cl", "d")

// normalizeEmail validates a bare address (local@domain, no display name, no
// comments), ASCII only, with a domain of at least two labels. The domain is
// lower-cased; the local part is kept as given. An empty address is allowed unless
// required.
func normalizeEmail(s string, required bool) (string, error) {
	if s == "" {
		if required {
			return "", fmt.Errorf("%w: required", ErrEmailInvalid)
		}
		return "", nil
	}
	if len(s) > MaxEmailLen {
		return "", fmt.Errorf("%w: longer than %d characters", ErrEmailInvalid, MaxEmailLen)
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return "", fmt.Errorf("%w: only printable ASCII without spaces is allowed", ErrEmailInvalid)
		}
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		return "", fmt.Errorf("%w: expected the form name@example.org", ErrEmailInvalid)
	}
	at := strings.LastIndexByte(s, '@')
	local, domain := s[:at], s[at+1:]
	if local == "" || len(local) > 64 || strings.HasPrefix(local, "\"") {
		return "", fmt.Errorf("%w: bad local part", ErrEmailInvalid)
	}
	labels := strings.Split(domain, ".")
	if len(labels) < 2 {
		return "", fmt.Errorf("%w: the domain needs a dot", ErrEmailInvalid)
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return "", fmt.Errorf("%w: bad domain", ErrEmailInvalid)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return "", fmt.Errorf("%w: bad domain", ErrEmailInvalid)
			}
		}
	}
	return local + "@" + strings.ToLower(domain), nil
}

// CheckPassword applies the password policy: valid UTF-8 without control
// characters, at least MinPasswordLen characters with an upper-case letter, a
// lower-case letter, a digit and a special character (anything that is not a
// letter or digit), and at most MaxPasswordBytes bytes. It returns an error
// wrapping ErrPasswordTooLong or ErrPasswordPolicy that lists what is missing and
// never contains the password.
func CheckPassword(p string) error {
	if len(p) > MaxPasswordBytes {
		return fmt.Errorf("%w: %d bytes, at most %d bytes are allowed (bcrypt would ignore the rest, so it is refused rather than truncated)",
			ErrPasswordTooLong, len(p), MaxPasswordBytes)
	}
	if !utf8.ValidString(p) {
		return fmt.Errorf("%w: not valid UTF-8", ErrPasswordPolicy)
	}
	var upper, lower, digit, special bool
	for _, r := range p {
		switch {
		case unicode.IsControl(r):
			return fmt.Errorf("%w: contains a control character", ErrPasswordPolicy)
		case unicode.IsUpper(r):
			upper = true
		case unicode.IsLower(r):
			lower = true
		case unicode.IsDigit(r):
			digit = true
		case !unicode.IsLetter(r):
			special = true
		}
	}
	var missing []string
	if n := utf8.RuneCountInString(p); n < MinPasswordLen {
		missing = append(missing, fmt.Sprintf("at least %d characters", MinPasswordLen))
	}
	for _, c := range []struct {
		ok   bool
		what string
	}{{upper, "an upper-case letter"}, {lower, "a lower-case letter"}, {digit, "a digit"}, {special, "a special character"}} {
		if !c.ok {
			missing = append(missing, c.what)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: needs %s", ErrPasswordPolicy, strings.Join(missing, ", "))
	}
	return nil
}
