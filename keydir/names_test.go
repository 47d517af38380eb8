package keydir

import (
	"errors"
	"strings"
	"testing"
)

func TestNormalizeUsername(t *testing.T) {
	same := map[string]string{
		"plain":         "alice",
		"upper":         "ALICE",
		"mixed":         "aLiCe",
		"fullwidth":     "ａｌｉｃｅ",
		"fullwidth up":  "ＡＬＩＣＥ",
		"normal":        "alice",
		"kelvin sign":   "\u212Aate", // KELVIN SIGN folds to k
		"punctuation":   "a.b_c-d",
		"fullwidth dot": "a．b_c-d",
	}
	want := map[string]string{"kelvin sign": "kate", "punctuation": "a.b_c-d", "fullwidth dot": "a.b_c-d"}
	for name, in := range same {
		t.Run(name, func(t *testing.T) {
			got, err := NormalizeUsername(in)
			if err != nil {
				t.Fatalf("NormalizeUsername(%q): %v", in, err)
			}
			w := want[name]
			if w == "" {
				w = "alice"
			}
			if got != w {
				t.Fatalf("NormalizeUsername(%q) = %q, want %q", in, got, w)
			}
			again, err := NormalizeUsername(got)
			if err != nil || again != got {
				t.Fatalf("not idempotent: %q → %q, %v", got, again, err)
			}
		})
	}

	bad := map[string]struct{ in, reason string }{
		"empty":             {"", "empty"},
		"too short":         {"ab", "3 to 32"},
		"too long":          {strings.Repeat("a", 33), "3 to 32"},
		"huge":              {strings.Repeat("a", 10000), "longer than"},
		"zero width space":  {"ali\u200bce", "invisible"},
		"leading zwsp":      {"\u200balice", "invisible"},
		"zwj":               {"ali\u200dce", "invisible"},
		"soft hyphen":       {"ali\u00adce", "invisible"},
		"bidi override":     {"\u202ealice", "invisible"},
		"bom":               {"\ufeffalice", "invisible"},
		"variation sel":     {"alice\ufe0f", "invisible"},
		"hangul filler":     {"alice\u3164", "invisible"},
		"trailing space":    {"alice ", "space"},
		"leading space":     {" alice", "space"},
		"inner space":       {"al ice", "space"},
		"nbsp":              {"alice\u00a0", "space"},
		"ideographic space": {"alice\u3000", "space"},
		"tab":               {"alice\t", "control"},
		"newline":           {"alice\n", "control"},
		"nul":               {"ali\x00ce", "control"},
		"del":               {"alice\x7f", "control"},
		"invalid utf8":      {"ali\xffce", "UTF-8"},
		"cyrillic a":        {"\u0430lice", "only letters"},
		"accent":            {"alicé", "only letters"},
		"emoji":             {"alice😀", "only letters"},
		"at sign":           {"alice@x", "only letters"},
		"leading dot":       {".alice", "start and end"},
		"trailing dash":     {"alice-", "start and end"},
		"double dot":        {"al..ice", "in a row"},
	}
	for name, c := range bad {
		t.Run("bad "+name, func(t *testing.T) {
			got, err := NormalizeUsername(c.in)
			if !errors.Is(err, ErrUsernameInvalid) {
				t.Fatalf("NormalizeUsername(%q) = %q, %v; want ErrUsernameInvalid", c.in, got, err)
			}
			if !strings.Contains(err.Error(), c.reason) {
				t.Fatalf("error %q does not say %q", err, c.reason)
			}
		})
	}
}

func TestCheckPassword(t *testing.T) {
	cases := map[string]struct {
		pw   string
		want error
		says string
	}{
		"good":               {"Correct-h0rse", nil, ""},
		"good unicode":       {"Ünïcødé-1x", nil, ""},
		"space is special":   {"Abcdef 1", nil, ""},
		"exactly 72 bytes":   {"Aa1!" + strings.Repeat("x", 68), nil, ""},
		"short":              {"Ab1!xyz", ErrPasswordPolicy, "at least 8 characters"},
		"no upper":           {"correct-h0rse", ErrPasswordPolicy, "upper-case"},
		"no lower":           {"CORRECT-H0RSE", ErrPasswordPolicy, "lower-case"},
		"no digit":           {"Correct-horse", ErrPasswordPolicy, "a digit"},
		"no special":         {"CorrectH0rse", ErrPasswordPolicy, "special"},
		"empty":              {"", ErrPasswordPolicy, "at least 8 characters, an upper-case letter, a lower-case letter, a digit, a special character"},
		"control":            {"Correct-h0rse\x00", ErrPasswordPolicy, "control"},
		"invalid utf8":       {"Correct-h0rse\xff", ErrPasswordPolicy, "UTF-8"},
		"73 bytes":           {"Aa1!" + strings.Repeat("x", 69), ErrPasswordTooLong, "73 bytes, at most 72"},
		"8 runes 80 bytes":   {"Aa1!" + strings.Repeat("漢", 25), ErrPasswordTooLong, "refused rather than truncated"},
		"multibyte short ok": {"Aa1!漢漢漢漢", nil, ""},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			err := CheckPassword(c.pw)
			if c.want == nil {
				if err != nil {
					t.Fatalf("CheckPassword: %v", err)
				}
				return
			}
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("CheckPassword = %v, want %v saying %q", err, c.want, c.says)
			}
			if c.pw != "" && strings.Contains(err.Error(), c.pw) {
				t.Fatalf("error quotes the password: %v", err)
			}
		})
	}
}

func TestNormalizeEmail(t *testing.T) {
	good := map[string]string{
		"alice@example.org":        "alice@example.org",
		"Alice.B+tag@EXAMPLE.Org":  "Alice.B+tag@example.org",
		"a@b.onion":                "a@b.onion",
		"x_y-z@mail.example.co.uk": "x_y-z@mail.example.co.uk",
	}
	for in, want := range good {
		got, err := normalizeEmail(in, false)
		if err != nil || got != want {
			t.Errorf("normalizeEmail(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	bad := []string{
		"alice", "alice@", "@example.org", "alice@example", "alice@@example.org",
		"Alice <alice@example.org>", "alice@example.org (comment)", "alice @example.org",
		"alice@exa mple.org", "alice@-example.org", "alice@example-.org", "alice@example..org",
		"alicé@example.org", "alice@exämple.org", "\"a b\"@example.org", "alice@example.org\n",
		strings.Repeat("a", 65) + "@example.org", "a@" + strings.Repeat("b", 250) + ".org",
		"alice@ex_ample.org",
	}
	for _, in := range bad {
		if got, err := normalizeEmail(in, false); !errors.Is(err, ErrEmailInvalid) {
			t.Errorf("normalizeEmail(%q) = %q, %v; want ErrEmailInvalid", in, got, err)
		}
	}
	if _, err := normalizeEmail("", true); !errors.Is(err, ErrEmailInvalid) {
		t.Errorf("required empty e-mail: %v", err)
	}
	if got, err := normalizeEmail("", false); err != nil || got != "" {
		t.Errorf("optional empty e-mail: %q, %v", got, err)
	}
}
