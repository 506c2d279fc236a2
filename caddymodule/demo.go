package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/emmansun/gmsm/sm3"
	"github.com/emmansun/gmsm/smx509"
	"github.com/spf13/cobra"

	"github.com/gmgate/gmgate/client"
	"github.com/gmgate/gmgate/pki"
)

// demoCommand is `gmgate demo pay`: the newcomer's first payment through the flow of
// Caddyfile.example, as the demo terminal of the development PKI.
func demoCommand(cmd *cobra.Command) {
	pay := &cobra.Command{
		Use:   "pay",
		Short: "Sends one signed payment (wechatpay-v3-sm2 over TLCP) and verifies the signed reply",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			o := demoOptions{}
			o.url, _ = c.Flags().GetString("url")
			o.path, _ = c.Flags().GetString("path")
			o.dir, _ = c.Flags().GetString("dir")
			o.suite, _ = c.Flags().GetString("suite")
			o.mchid, _ = c.Flags().GetString("mchid")
			o.amount, _ = c.Flags().GetInt("amount")
			o.timeout, _ = c.Flags().GetDuration("timeout")
			if o.dir == "" {
				o.dir = filepath.Join(caddy.AppDataDir(), "gmgate", "devpki")
			}
			return demoPay(c.Context(), c.OutOrStdout(), o)
		},
	}
	pay.Flags().String("url", "https://localhost:8443", "the gateway's ingress (TLCP)")
	pay.Flags().String("path", "/v3/pay/transactions/native", "the payment API path")
	pay.Flags().String("dir", "", "the development PKI directory (default: gmgate/devpki under Caddy's data directory, as `gmgate run` uses it)")
	pay.Flags().String("suite", "ECC_SM4_GCM_SM3", "the TLCP cipher suite to offer")
	pay.Flags().String("mchid", "1900000001", "the demo merchant ID")
	pay.Flags().Int("amount", 1, "the amount, in fen")
	pay.Flags().Duration("timeout", 15*time.Second, "time for the whole exchange")
	cmd.AddCommand(pay)
	cmd.Use = CommandPrefix + "demo pay"
}

type demoOptions struct {
	url, path, dir, suite, mchid string
	amount                       int
	timeout                      time.Duration
}

// demoPay sends one payment and prints each step: who signs, what crosses, who signed the reply.
func demoPay(ctx context.Context, out io.Writer, o demoOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	file := func(base string) string { return filepath.Join(o.dir, base) }
	sign, enc, err := client.LoadTerminal(file(pki.DevClientSignBase+".pem"), file(pki.DevClientSignBase+".key"),
		file(pki.DevClientEncBase+".pem"), file(pki.DevClientEncBase+".key"), nil)
	if err != nil {
		return fmt.Errorf("the demo terminal's keys (start `gmgate run --config Caddyfile.example` once, or pass --dir): %w", err)
	}
	roots, err := client.LoadCertificates(file(pki.DevRootBase + ".pem"))
	if err != nil {
		return err
	}
	platform, err := client.LoadCertificates(file(pki.DevPlatformBase + ".pem"))
	if err != nil {
		return err
	}
	suites, err := parseSuites([]string{o.suite})
	if err != nil {
		return err
	}
	pool := smx509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	key, err := sign.SigningKey("", o.mchid)
	if err != nil {
		return err
	}
	cl, err := client.New(client.Config{
		BaseURL:       o.url,
		TLCP:          &client.TLCPConfig{Sign: sign, Enc: enc, RootCAs: pool, CipherSuites: suites},
		Scheme:        "wechatpay-v3-sm2",
		Key:           key,
		PlatformCerts: platform,
		Timeout:       o.timeout,
	})
	if err != nil {
		return err
	}
	defer cl.CloseIdleConnections()

	order := map[string]any{
		"mchid":        o.mchid,
		"appid":        "wxdemo",
		"description":  "gmgate demo payment",
		"out_trade_no": fmt.Sprintf("DEMO%d", time.Now().UnixNano()),
		"amount":       map[string]any{"total": o.amount, "currency": "CNY"},
	}
	body, err := json.Marshal(order)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "terminal  %s (serial %s), TLCP %s to %s\n", sign.Certificate.Subject.CommonName,
		strings.ToUpper(sign.Certificate.SerialNumber.Text(16)), o.suite, o.url)
	sum := sm3.Sum(body)
	fmt.Fprintf(out, "request   POST %s, signed WECHATPAY2-SM2-WITH-SM3 by the terminal\n          %s\n          (SM3 of the body %x)\n", o.path, body, sum[:8])

	resp, err := cl.Post(ctx, o.path, "application/json", body)
	if err != nil {
		return fmt.Errorf("the payment failed: %w", err)
	}
	fmt.Fprintf(out, "reply     %d %s\n", resp.StatusCode, strings.TrimSpace(string(resp.Body)))
	if saw := resp.Header.Get("X-Demo-Backend-Saw-Client"); saw != "" {
		fmt.Fprintf(out, "back end  received plain JSON from the gateway for the verified client %q\n", saw)
	}
	r := resp.Reply
	fmt.Fprintf(out, "verified  the reply is signed by %s (serial %s) at %s: OK\n", r.Subject, r.Serial, r.Timestamp.Format(time.RFC3339))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("the gateway answered %d", resp.StatusCode)
	}
	return nil
}
