package signing

import (
	"strings"
	"testing"
	"time"
)

func TestSettingsBuild(t *testing.T) {
	for _, tc := range []struct {
		s       Settings
		want    string
		wantErr string
	}{
		{Settings{Name: WechatPayName}, WechatPayName, ""},
		{Settings{Name: HTTPSigName, Label: "gm", Components: []string{"@method"}, ReplyComponents: []string{"@status"}}, HTTPSigName, ""},
		{Settings{Name: FormName, SignatureEncoding: "raw", TextEncoding: "hex", UserIDFromKeyID: true}, FormName, ""},
		{Settings{Name: UnionPayName, SignatureEncoding: "DER", TimestampField: "txnTime"}, UnionPayName, ""},
		{Settings{}, "", "no scheme named"},
		{Settings{Name: "rsa"}, "", "unknown scheme"},
		{Settings{Name: FormName, SignatureEncoding: "pem"}, "", "signature encoding"},
		{Settings{Name: FormName, TextEncoding: "base32"}, "", "text encoding"},
		{Settings{Name: FormName, TimestampLayout: "unix"}, "", "timestamp layout needs"},
		{Settings{Name: FormName, UserID: strings.Repeat("x", MaxUserIDLen+1)}, "", "user ID too long"},
	} {
		s, err := tc.s.Build()
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%+v: err %v, want %q", tc.s, err, tc.wantErr)
			}
			continue
		}
		if err != nil || s.Name() != tc.want {
			t.Errorf("%+v: %v %v", tc.s, s, err)
		}
	}
}

// A timestamp field without a layout keeps the scheme's layout: form-sm2 reads
// "2006-01-02 15:04:05" from the renamed field.
func TestSettingsTimestampFieldKeepsLayout(t *testing.T) {
	sch, err := Settings{Name: FormName, TimestampField: "ts"}.Build()
	if err != nil {
		t.Fatal(err)
	}
	key := Key{Signer: newKey(t), MerchantID: "2021"}
	m := &Message{Kind: Request, Header: map[string][]string{},
		Body: []byte("amount=100&app_id=2021&ts=2026-11-25+18%3A00%3A00")}
	if err := sch.Sign(m, key, time.Now(), "n1"); err != nil {
		t.Fatal(err)
	}
	sd, err := sch.Parse(m)
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2026, 11, 25, 18, 0, 0, 0, time.FixedZone("CST", 8*3600))
	if !sd.Timestamp.Equal(want) {
		t.Fatalf("timestamp %v, want %v", sd.Timestamp, want)
	}
}
