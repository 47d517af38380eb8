package pgp

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// The key-pair ZIP is the browser's (static/js/pgp.mjs exportZip, zip.mjs): stored entries (no compression),
// the armored public key, the passphrase-protected armored private key, and a README.
const (
	zipMaxEntries = 16      // zip.mjs MAX_ENTRIES
	zipMaxEntry   = 1 << 20 // zip.mjs MAX_ENTRY_BYTES
)

// ExportZip returns the key pair as the browser's export ZIP, the private key encrypted with passphrase
// (iterated-and-salted S2K, AES-256). The browser's import reads it, and gpg --import a v4 key's.
func ExportZip(k *Key, passphrase []byte) ([]byte, error) {
	locked, err := k.lockedArmored(passphrase)
	if err != nil {
		return nil, err
	}
	pub, err := k.ArmoredPublic()
	if err != nil {
		return nil, err
	}
	fp := k.Fingerprint()
	elsewhere := "Import it into cleanrelay, or into GnuPG with:\n  gpg --import *-private.asc\n"
	if k.Version() == 6 {
		elsewhere = "This is an OpenPGP v6 key (RFC 9580): GnuPG 2.2 and 2.4 cannot import it. Import it into cleanrelay,\n" +
			"or into another RFC 9580 (OpenPGP v6) implementation.\n"
	}
	files := []struct{ name, data string }{
		{"cleanrelay-" + fp[len(fp)-16:] + "-public.asc", pub},
		{"cleanrelay-" + fp[len(fp)-16:] + "-private.asc", locked},
		{"README.txt", "cleanrelay key pair\nFingerprint: " + groupFingerprint(fp) + "\nThe private key is encrypted with your passphrase. " + elsewhere},
	}
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for _, f := range files {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: f.name, Method: zip.Store, Modified: time.Now()})
		if err != nil {
			return nil, err
		}
		if _, err := io.WriteString(w, f.data); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("failed to write the zip: %w", err)
	}
	return b.Bytes(), nil
}

// ImportZip reads a key-pair ZIP (the browser's export, or any stored ZIP with one armored private key and
// optionally its public key) and unlocks the private key with passphrase. A wrong passphrase is
// ErrWrongPassphrase; anything else wrong with the archive is an error saying what.
func ImportZip(data []byte, passphrase []byte) (*Key, error) {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("failed to import the key: not a zip archive: %w", err)
	}
	if len(zr.File) > zipMaxEntries {
		return nil, fmt.Errorf("failed to import the key: more than %d entries in the zip", zipMaxEntries)
	}
	var priv, pub string
	for _, f := range zr.File {
		if f.UncompressedSize64 > zipMaxEntry {
			return nil, fmt.Errorf("failed to import the key: %s is over %d bytes", f.Name, zipMaxEntry)
		}
		rc, err := f.Open()
		if err != nil {
			return nil, fmt.Errorf("failed to import the key: %s: %w", f.Name, err)
		}
		b, err := io.ReadAll(io.LimitReader(rc, zipMaxEntry+1))
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("failed to import the key: %s: %w", f.Name, err)
		}
		text := string(b)
		switch {
		case strings.Contains(text, "-----BEGIN PGP PRIVATE KEY BLOCK-----"):
			if priv != "" {
				return nil, errors.New("failed to import the key: the zip holds more than one private key")
			}
			priv = text
		case strings.Contains(text, "-----BEGIN PGP PUBLIC KEY BLOCK-----") && strings.HasSuffix(f.Name, ".asc"):
			pub = text
		}
	}
	if priv == "" {
		return nil, errors.New("failed to import the key: the zip holds no armored private key")
	}
	k, err := unlock(priv, passphrase)
	if err != nil {
		return nil, err
	}
	if pub != "" {
		p, err := ReadPublic(pub)
		if err != nil {
			return nil, fmt.Errorf("failed to import the key: its public key: %w", err)
		}
		if p.Fingerprint() != k.Fingerprint() {
			return nil, errors.New("failed to import the key: the public key does not match the private key")
		}
	}
	return k, nil
}

// groupFingerprint writes a fingerprint in groups of four, as the browser shows it.
func groupFingerprint(fp string) string {
	var parts []string
	for i := 0; i < len(fp); i += 4 {
		parts = append(parts, fp[i:min(i+4, len(fp))])
	}
	return strings.Join(parts, " ")
}
