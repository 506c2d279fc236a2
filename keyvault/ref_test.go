package keyvault

import (
	"bytes"
	"crypto/rand"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"reflect"
	"strings"
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
		// id= is CKA_ID, raw bytes: never a label (it was taken as the label "\x01\x02").
		{"pkcs11:token=t;id=%01%02", Ref{Scheme: "pkcs11", Token: "t", ID: []byte{1, 2}}, nil},
		{"pkcs11:token=t;object=k;id=%01%02", Ref{Scheme: "pkcs11", Token: "t", Object: "k", ID: []byte{1, 2}}, nil},
		{"pkcs11:id=AB%ff", Ref{Scheme: "pkcs11", ID: []byte{'A', 'B', 0xff}}, nil},
		{"pkcs11:id=%00%01", Ref{Scheme: "pkcs11", ID: []byte{0, 1}}, nil},
		{"pkcs11:manufacturer=SoftHSM%20project;model=SoftHSM%20v2;token=t;object=o", Ref{Scheme: "pkcs11", Token: "t", Object: "o", Manufacturer: "SoftHSM project", Model: "SoftHSM v2"}, nil},
		{"pkcs11:slot-id=007;slot-description=S;slot-manufacturer=M;object=o", Ref{Scheme: "pkcs11", Object: "o", SlotID: "7", SlotDescription: "S", SlotManufacturer: "M"}, nil},
		{"pkcs11:library-manufacturer=L;library-description=D;library-version=2;object=o", Ref{Scheme: "pkcs11", Object: "o", LibraryManufacturer: "L", LibraryDescription: "D", LibraryVersion: "2"}, nil},
		{"pkcs11:object=o?module-name=softhsm2&module-path=/usr/lib/softhsm/", Ref{Scheme: "pkcs11", Object: "o", ModuleName: "softhsm2", ModulePath: "/usr/lib/softhsm"}, nil},
		// The scheme is case-insensitive (RFC 3986 3.1); attribute names are not.
		{"PKCS11:token=t;object=o", Ref{Scheme: "pkcs11", Token: "t", Object: "o"}, nil},
		{"Pkcs11:object=o", Ref{Scheme: "pkcs11", Object: "o"}, nil},
		{"FILE:/etc/gmgate/dev.pem", Ref{Scheme: "file", Path: "/etc/gmgate/dev.pem"}, nil},
		{"pkcs11:OBJECT=o", Ref{}, ErrBadReference},
		// pin-source: a file: URI or an absolute path (the file's first line is the PIN).
		{"pkcs11:token=t;object=o?pin-source=file:/etc/pin", Ref{Scheme: "pkcs11", Token: "t", Object: "o", PINSource: "/etc/pin"}, nil},
		{"pkcs11:object=o?pin-source=file:///etc/pin", Ref{Scheme: "pkcs11", Object: "o", PINSource: "/etc/pin"}, nil},
		{"pkcs11:object=o?pin-source=file://localhost/etc/pin", Ref{Scheme: "pkcs11", Object: "o", PINSource: "/etc/pin"}, nil},
		{"pkcs11:object=o?pin-source=FILE:/etc/pin", Ref{Scheme: "pkcs11", Object: "o", PINSource: "/etc/pin"}, nil},
		{"pkcs11:object=o?pin-source=/etc/gmgate/hsm%20pin", Ref{Scheme: "pkcs11", Object: "o", PINSource: "/etc/gmgate/hsm pin"}, nil},
		{"pkcs11:object=o?pin-source=file://elsewhere/etc/pin", Ref{}, ErrBadReference},
		{"pkcs11:object=o?pin-source=%7C/usr/bin/get-pin", Ref{}, ErrBadReference},
		{"pkcs11:object=o?pin-source=pin.txt", Ref{}, ErrBadReference},
		{"pkcs11:object=o?pin-source=file:pin.txt", Ref{}, ErrBadReference},
		{"pkcs11:object=o?pin-source=file:/a&pin-source=file:/b", Ref{}, ErrBadReference},
		{"pkcs11:token=t;object=o?pin-value=1234", Ref{}, ErrBadReference},
		{"pkcs11:object=o?module-path=lib/x.so", Ref{}, ErrBadReference},
		{"pkcs11:object=o?module-name=/usr/lib/x", Ref{}, ErrBadReference},
		{"file:/etc/gmgate/dev.pem", Ref{Scheme: "file", Path: "/etc/gmgate/dev.pem"}, nil},
		{"file:///etc/gmgate/dev.pem", Ref{Scheme: "file", Path: "/etc/gmgate/dev.pem"}, nil},
		// What cannot be honoured is refused, never ignored.
		{"pkcs11:manufacturer=SoftHSM%20project;token=t;object=o;x-vendor=1", Ref{}, ErrBadReference},
		{"pkcs11:object=o?x-vendor=1", Ref{}, ErrBadReference},
		{"pkcs11:object=o?colour=red", Ref{}, ErrBadReference},
		{"pkcs11:token=t;object=o;colour=red", Ref{}, ErrBadReference},
		{"pkcs11:slot-id=0x1;object=o", Ref{}, ErrBadReference},
		{"pkcs11:slot-id=-1;object=o", Ref{}, ErrBadReference},
		{"pkcs11:library-version=1.2.3;object=o", Ref{}, ErrBadReference},
		{"pkcs11:library-version=256;object=o", Ref{}, ErrBadReference},
		{"pkcs11:library-version=.1;object=o", Ref{}, ErrBadReference},
		{"pkcs11:id=;object=o", Ref{}, ErrBadReference},
		{"pkcs11:token=t", Ref{}, ErrBadReference},
		{"pkcs11:token=t;object=a@1", Ref{}, ErrBadReference},
		{"pkcs11:token=t;object=a/b", Ref{}, ErrBadReference},
		{"pkcs11:token=t;object=a%00b", Ref{}, ErrBadReference},
		{"pkcs11:token=t;token=u;object=o", Ref{}, ErrBadReference},
		{"pkcs11:token=t;object=%zz", Ref{}, ErrBadReference},
		{"pkcs11:token=t;object=o;type=banana", Ref{}, ErrBadReference},
		{"pkcs11:token;object=o", Ref{}, ErrBadReference},
		{"pkcs11x:object=o", Ref{}, ErrBadReference},
		{"file:", Ref{}, ErrBadReference},
		{"http://x", Ref{}, ErrBadReference},
		{"object=o", Ref{}, ErrBadReference},
		{"", Ref{}, ErrBadReference},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) { checkParseRef(t, c.in, c.want, c.errIs) })
	}
}

// TestParseRefRFC7512Examples runs the example URIs of RFC 7512 section 3.4. Those naming no
// object (a token, slot or library alone) do not name a key and are refused; pin-value and
// vendor attributes are refused; the rest parse to what the RFC says they mean.
func TestParseRefRFC7512Examples(t *testing.T) {
	cases := []struct {
		in    string
		want  Ref
		errIs error
	}{
		{"pkcs11:", Ref{}, ErrBadReference},
		{"pkcs11:object=my-pubkey;type=public", Ref{Scheme: "pkcs11", Object: "my-pubkey", Type: "public"}, nil},
		{"pkcs11:object=my-key;type=private?pin-source=file:/etc/token", Ref{Scheme: "pkcs11", Object: "my-key", Type: "private", PINSource: "/etc/token"}, nil},
		{"pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;manufacturer=Snake%20Oil,%20Inc.;model=1.0;object=my-certificate;type=cert;id=%69%95%3E%5C%F4%BD%EC%91;serial=?pin-source=file:/etc/token_pin",
			Ref{Scheme: "pkcs11", Token: "The Software PKCS#11 Softtoken", Manufacturer: "Snake Oil, Inc.", Model: "1.0", Object: "my-certificate", Type: "cert",
				ID: []byte{0x69, 0x95, 0x3e, 0x5c, 0xf4, 0xbd, 0xec, 0x91}, PINSource: "/etc/token_pin"}, nil},
		{"pkcs11:object=my-sign-key;type=private?module-name=mypkcs11", Ref{Scheme: "pkcs11", Object: "my-sign-key", Type: "private", ModuleName: "mypkcs11"}, nil},
		{"pkcs11:object=my-sign-key;type=private?module-path=/mnt/libmypkcs11.so.1", Ref{Scheme: "pkcs11", Object: "my-sign-key", Type: "private", ModulePath: "/mnt/libmypkcs11.so.1"}, nil},
		{"pkcs11:token=Software%20PKCS%2311%20softtoken;manufacturer=Snake%20Oil,%20Inc.?pin-value=the-pin", Ref{}, ErrBadReference},
		{"pkcs11:slot-description=Sun%20Metaslot", Ref{}, ErrBadReference},
		{"pkcs11:library-manufacturer=Snake%20Oil,%20Inc.;library-description=Soft%20Token%20Library;library-version=1.23", Ref{}, ErrBadReference},
		{"pkcs11:token=My%20token%25%20created%20by%20Joe;library-version=3;id=%01%02%03%Ba%dd%Ef%fe;object=%E2%82%AC",
			Ref{Scheme: "pkcs11", Token: "My token% created by Joe", LibraryVersion: "3", ID: []byte{1, 2, 3, 0xba, 0xdd, 0xef, 0xfe}, Object: "€"}, nil},
		{"pkcs11:token=A%20name%20with%20a%20substring%20%25%3B;object=my-certificate;type=cert", Ref{Scheme: "pkcs11", Token: "A name with a substring %;", Object: "my-certificate", Type: "cert"}, nil},
		{"pkcs11:token=Name%20with%20a%20small%20A%20with%20acute:%20%C3%A1;object=my-certificate;type=cert", Ref{Scheme: "pkcs11", Token: "Name with a small A with acute: á", Object: "my-certificate", Type: "cert"}, nil},
		{"pkcs11:token=my-token;object=my-certificate;type=cert;vendor-aaa=value-a?pin-source=file:/etc/token_pin&vendor-bbb=value-b", Ref{}, ErrBadReference},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) { checkParseRef(t, c.in, c.want, c.errIs) })
	}
	// library-version=1.23 is major 1, minor 23; "3" is 3.0.
	if ma, mi, ok := parseLibraryVersion("1.23"); !ok || ma != 1 || mi != 23 {
		t.Fatalf("1.23: %d.%d %v", ma, mi, ok)
	}
	if ma, mi, ok := parseLibraryVersion("3"); !ok || ma != 3 || mi != 0 {
		t.Fatalf("3: %d.%d %v", ma, mi, ok)
	}
}

func checkParseRef(t *testing.T, in string, want Ref, errIs error) {
	t.Helper()
	got, err := ParseRef(in)
	if errIs != nil {
		mustKind(t, err, errIs)
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	// String round-trips.
	again, err := ParseRef(got.String())
	if err != nil || !reflect.DeepEqual(again, got) {
		t.Fatalf("round trip %q: %+v %v", got.String(), again, err)
	}
}

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"/usr/lib/libmypkcs11.so.1":                  "mypkcs11",
		"/usr/lib/softhsm/libsofthsm2.so":            "softhsm2",
		"/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so": "opensc-pkcs11",
		"/opt/vendor/libcs_pkcs11_R3.so":             "cs_pkcs11_R3",
		"/usr/local/lib/libfoo.dylib":                "foo",
		"/opt/hsm/cryptoki":                          "cryptoki",
		"/opt/lib/libsome.sol.so":                    "some.sol",
	} {
		if got := moduleName(in); got != want {
			t.Errorf("moduleName(%q) = %q, want %q", in, got, want)
		}
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
	for _, s := range []string{"pkcs11:token=gmgate;object=platform-sign", "pkcs11:serial=1;id=%01?module-path=/x", "file:/a.pem", "pkcs11:object=a%00b", "pkcs11:;;?&",
		"PKCS11:id=%01%02", "pkcs11:slot-id=3;library-version=1.2;object=o?pin-source=file:///etc/pin&module-name=softhsm2",
		"pkcs11:token=My%20token%25%20created%20by%20Joe;library-version=3;id=%01%02%03%Ba%dd%Ef%fe;object=%E2%82%AC"} {
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
		if r.Scheme == "pkcs11" {
			if r.Object == "" && len(r.ID) == 0 {
				t.Fatalf("accepted a reference selecting no object: %q", s)
			}
			if strings.ContainsAny(r.Object, "@/\x00") {
				t.Fatalf("accepted bad object %q", r.Object)
			}
			if r.PINSource != "" && !strings.HasPrefix(r.PINSource, "/") {
				t.Fatalf("accepted relative pin-source %q", r.PINSource)
			}
		}
		again, err := ParseRef(r.String())
		if err != nil {
			t.Fatalf("String() %q does not re-parse: %v", r.String(), err)
		}
		if !reflect.DeepEqual(again, r) {
			t.Fatalf("String() %q re-parses to %+v, not %+v", r.String(), again, r)
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
