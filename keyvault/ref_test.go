package keyvault

import (
	"bytes"
	"crypto/rand"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"testing"
)

func TestParseRef(t *testing.T) {
	cases := []struct {
		in    string
		want  Ref
		errIs error
	}{
		{"pkcs11:token=gmgate;object=platform-sign", Ref{Scheme: "pkcs11", Token: "gmgate", Object: "platform-sign"}, nil},
		{"pkcs11:token=My%20Token;object=k1;type=private", Ref{Scheme: "pkcs11", Token: "My Token", Object: "k1", Type: "private"}, nil},
		{"pkcs11:serial=abc123;object=k?module-path=/usr/lib/x.so", Ref{Scheme: "pkcs11", Serial: "abc123", Object: "k", ModulePath: "/usr/lib/x.so"}, nil},
		{"pkcs11:token=t;id=%01%02", Ref{Scheme: "pkcs11", Token: "t", ID: []byte{1, 2}, Object: "\x01\x02"}, nil},
		{"pkcs11:manufacturer=SoftHSM%20project;token=t;object=o;x-vendor=1", Ref{Scheme: "pkcs11", Token: "t", Object: "o"}, nil},
		{"file:/etc/gmgate/dev.pem", Ref{Scheme: "file", Path: "/etc/gmgate/dev.pem"}, nil},
		{"file:///etc/gmgate/dev.pem", Ref{Scheme: "file", Path: "/etc/gmgate/dev.pem"}, nil},
		{"pkcs11:token=t;object=o?pin-value=1234", Ref{}, ErrBadReference},
		{"pkcs11:token=t;object=o?pin-source=file:/pin", Ref{}, ErrBadReference},
		{"pkcs11:token=t", Ref{}, ErrBadReference},
		{"pkcs11:token=t;object=a@1", Ref{}, ErrBadReference},
		{"pkcs11:token=t;token=u;object=o", Ref{}, ErrBadReference},
		{"pkcs11:token=t;object=%zz", Ref{}, ErrBadReference},
		{"pkcs11:token=t;object=o;type=banana", Ref{}, ErrBadReference},
		{"pkcs11:token=t;object=o;colour=red", Ref{}, ErrBadReference},
		{"pkcs11:token;object=o", Ref{}, ErrBadReference},
		{"file:", Ref{}, ErrBadReference},
		{"http://x", Ref{}, ErrBadReference},
		{"", Ref{}, ErrBadReference},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			got, err := ParseRef(c.in)
			if c.errIs != nil {
				mustKind(t, err, c.errIs)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Scheme != c.want.Scheme || got.Token != c.want.Token || got.Serial != c.want.Serial || got.Object != c.want.Object ||
				got.Type != c.want.Type || got.ModulePath != c.want.ModulePath || got.Path != c.want.Path || !bytes.Equal(got.ID, c.want.ID) {
				t.Fatalf("got %+v want %+v", got, c.want)
			}
			// String round-trips.
			again, err := ParseRef(got.String())
			if err != nil || again.Object != got.Object || again.Token != got.Token || again.Path != got.Path {
				t.Fatalf("round trip %q: %+v %v", got.String(), again, err)
			}
		})
	}
}

func TestSplitVersion(t *testing.T) {
	cases := []struct {
		in   string
		name string
		ver  int
		bad  bool
	}{
		{"k", "k", 0, false}, {"k@1", "k", 1, false}, {"k@42", "k", 42, false},
		{"k@0", "", 0, true}, {"k@", "", 0, true}, {"k@x", "", 0, true}, {"k@-1", "", 0, true}, {"k@1234567", "", 0, true},
	}
	for _, c := range cases {
		n, v, err := splitVersion(c.in)
		if (err != nil) != c.bad || n != c.name || v != c.ver {
			t.Errorf("%q: %q %d %v", c.in, n, v, err)
		}
	}
	if v, ok := parseBlobLabel("obj", "obj@7"); !ok || v != 7 {
		t.Fatal("blob label")
	}
	for _, l := range []string{"obj@07", "obj@", "objx@1", "obj@1x", "other@1", "obj"} {
		if _, ok := parseBlobLabel("obj", l); ok {
			t.Errorf("accepted %q", l)
		}
	}
}

func TestParseSM4Key(t *testing.T) {
	key := []byte("0123456789abcdef")
	for _, in := range [][]byte{
		key,
		[]byte("30313233343536373839616263646566\n"),
		[]byte("3031 3233 3435 3637 3839 6162 6364 6566"),
		pem.EncodeToMemory(&pem.Block{Type: pemTypeSM4, Bytes: key}),
	} {
		got, err := ParseSM4Key(in)
		if err != nil || !bytes.Equal(got, key) {
			t.Fatalf("%q: %x %v", in, got, err)
		}
	}
	for _, in := range [][]byte{nil, key[:15], []byte("zz"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}),
		pem.EncodeToMemory(&pem.Block{Type: pemTypeSM4, Bytes: key[:8]})} {
		if _, err := ParseSM4Key(in); !errors.Is(err, ErrInvalidInput) {
			t.Fatalf("accepted %q", in)
		}
	}
}

func FuzzParseRef(f *testing.F) {
	for _, s := range []string{"pkcs11:token=gmgate;object=platform-sign", "pkcs11:serial=1;id=%01?module-path=/x", "file:/a.pem", "pkcs11:object=a%00b", "pkcs11:;;?&"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRef(s)
		if err != nil {
			if !errors.Is(err, ErrBadReference) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if r.Scheme == "pkcs11" && (r.Object == "" || bytes.ContainsAny([]byte(r.Object), "@/\x00")) {
			t.Fatalf("accepted bad object %q", r.Object)
		}
		if _, err := ParseRef(r.String()); err != nil {
			t.Fatalf("String() %q does not re-parse: %v", r.String(), err)
		}
	})
}

// FuzzKeyMaterial feeds arbitrary bytes to every key-material parser: none may panic, all
// failures are typed.
func FuzzKeyMaterial(f *testing.F) {
	priv := newSM2(f)
	f.Add(sm2PEM(f, priv, nil))
	f.Add([]byte("30313233343536373839616263646566"))
	raw := append([]byte{4}, append(priv.PublicKey.X.FillBytes(make([]byte, 32)), priv.PublicKey.Y.FillBytes(make([]byte, 32))...)...)
	wrapped, _ := asn1.Marshal(raw)
	f.Add(wrapped)
	sig := make([]byte, 64)
	rand.Read(sig)
	f.Add(sig)
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := ParseSM2PrivateKeyPEM(data, []byte("pw")); err != nil && ErrorKind(err) == "other" {
			t.Fatalf("untyped: %v", err)
		}
		if _, err := ParseSM4Key(data); err != nil && !errors.Is(err, ErrInvalidInput) {
			t.Fatalf("untyped: %v", err)
		}
		if _, err := parseECPoint(data); err != nil && !errors.Is(err, ErrIntegrity) {
			t.Fatalf("untyped: %v", err)
		}
		for _, p := range []*NativeProfile{{SignatureDER: true}, {SignatureDER: false}} {
			if _, err := p.signatureToDER(data); err != nil && !errors.Is(err, ErrToken) {
				t.Fatalf("untyped: %v", err)
			}
		}
		_, _ = normalizeCiphertext(data, nil)
	})
}

// FuzzUnseal feeds arbitrary blobs to the wrapped-key header checks (the token is never reached
// for malformed input) and the blob label parser.
func FuzzUnseal(f *testing.F) {
	f.Add([]byte("GMKV\x01"+string(make([]byte, 60))), "obj@1")
	f.Add([]byte("XXXX"), "obj@")
	f.Fuzz(func(t *testing.T, blob []byte, label string) {
		tok := &token{name: "fuzz"}
		hdr := len(blobMagic) + 1
		wellFormed := len(blob) >= hdr+blobIVLen+blobTagBits/8 && len(blob) <= maxBlob &&
			bytes.HasPrefix(blob, []byte(blobMagic)) && blob[len(blobMagic)] == blobFormat
		if !wellFormed {
			if _, err := tok.unseal([]byte("aad"), blob); !errors.Is(err, ErrIntegrity) {
				t.Fatalf("malformed blob not rejected: %v", err)
			}
		}
		if v, ok := parseBlobLabel("obj", label); ok && blobLabel("obj", v) != label {
			t.Fatalf("label %q parsed to %d", label, v)
		}
	})
}
