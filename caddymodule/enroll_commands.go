package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/user"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/emmansun/gmsm/sm2"
	"github.com/spf13/cobra"

	"github.com/gmgate/gmgate/client"
	"github.com/gmgate/gmgate/enroll"
	"github.com/gmgate/gmgate/pki"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:      CommandPrefix + "enroll",
		Usage:     "token|list|revoke|recover ...",
		Short:     "Terminal enrolment (gm_enroll): issues one-time tokens, lists pairs, revokes, recovers escrowed keys",
		CobraFunc: enrollCommand,
	})
	shortCommands["enroll"] = true
}

func enrollCommand(cmd *cobra.Command) {
	cmd.PersistentFlags().String("store", "", "gm_enroll's store directory (its `store` option)")
	cmd.PersistentFlags().Bool("json", false, "print JSON for scripts")
	openStore := func(c *cobra.Command) (*enroll.FileStore, error) {
		dir, _ := c.Flags().GetString("store")
		if dir == "" {
			return nil, fmt.Errorf("--store required")
		}
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("store %s: %w", dir, err)
		}
		return enroll.OpenFileStore(dir)
	}
	token := &cobra.Command{
		Use:   "token --store <dir> --profile <name> [--cn <terminal id>] [--ttl 24h] [--note text]",
		Short: "Issues a one-time enrolment token (printed once; the store keeps only its SM3 digest)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			st, err := openStore(c)
			if err != nil {
				return err
			}
			prof, _ := c.Flags().GetString("profile")
			cn, _ := c.Flags().GetString("cn")
			ttl, _ := c.Flags().GetDuration("ttl")
			note, _ := c.Flags().GetString("note")
			tok, rec, err := enroll.IssueToken(st, enroll.TokenOptions{Profile: prof, CommonName: cn, TTL: ttl, Note: note})
			if err != nil {
				return err
			}
			if j, _ := c.Flags().GetBool("json"); j {
				return json.NewEncoder(os.Stdout).Encode(map[string]any{"token": tok, "id": rec.ID, "profile": rec.Profile, "common_name": rec.CommonName, "not_after": rec.NotAfter})
			}
			fmt.Println(tok)
			return nil
		},
	}
	token.Flags().String("profile", "", "profile name (required)")
	token.Flags().String("cn", "", "the only common name the token may enrol (recommended: the terminal ID)")
	token.Flags().Duration("ttl", 24*time.Hour, "validity of the token (at most 2160h)")
	token.Flags().String("note", "", "note stored with the token (asset number, shop)")

	list := &cobra.Command{
		Use:   "list --store <dir>",
		Short: "Lists tokens (without secrets) and issued pairs with their state",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			st, err := openStore(c)
			if err != nil {
				return err
			}
			toks, err := st.Tokens()
			if err != nil {
				return err
			}
			certs, err := st.Certs()
			if err != nil {
				return err
			}
			type certView struct {
				Serial, EncSerial, CommonName, Profile, State, Via string
				NotAfter                                           time.Time
			}
			var cv []certView
			now := time.Now()
			for _, r := range certs {
				state := "valid"
				switch {
				case r.Revoked:
					state = "revoked"
				case r.RenewedBy != "":
					state = "renewed"
				case now.After(r.NotAfter):
					state = "expired"
				}
				cv = append(cv, certView{r.Serial, r.EncSerial, r.CommonName, r.Profile, state, r.Via, r.NotAfter})
			}
			if j, _ := c.Flags().GetBool("json"); j {
				for i := range toks {
					toks[i].Hash = nil
				}
				return json.NewEncoder(os.Stdout).Encode(map[string]any{"tokens": toks, "certificates": cv})
			}
			for _, t := range toks {
				state := "unused"
				if t.Used {
					state = "used"
				} else if now.After(t.NotAfter) {
					state = "expired"
				}
				fmt.Printf("token %s profile=%s cn=%q %s until %s\n", t.ID, t.Profile, t.CommonName, state, t.NotAfter.Format(time.RFC3339))
			}
			for _, r := range cv {
				fmt.Printf("pair %s enc=%s cn=%q profile=%s %s until %s via %s\n", r.Serial, r.EncSerial, r.CommonName, r.Profile, r.State, r.NotAfter.Format(time.RFC3339), r.Via)
			}
			return nil
		},
	}

	adminEnroller := func(c *cobra.Command) (*client.Enroller, string, error) {
		u, _ := c.Flags().GetString("url")
		if u == "" {
			return nil, "", fmt.Errorf("--url required")
		}
		return &client.Enroller{BaseURL: u}, u, nil
	}
	adminKey := func(c *cobra.Command) (string, *pkiKey, error) {
		certFile, _ := c.Flags().GetString("admin-cert")
		keyFile, _ := c.Flags().GetString("admin-key")
		id, err := client.LoadIdentity(certFile, keyFile, nil)
		if err != nil {
			return "", nil, err
		}
		return id.Certificate.Subject.CommonName, &pkiKey{id}, nil
	}

	revoke := &cobra.Command{
		Use:   "revoke --serial <hex> (--store <dir> | --url <enrolment URL> --admin-cert <pem> --admin-key <pem>)",
		Short: "Revokes a pair: offline in the store (the server re-signs the CRL within crl_check_interval) or through the server as an administrator (audited)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			serial, _ := c.Flags().GetString("serial")
			if serial == "" {
				return fmt.Errorf("--serial required")
			}
			if u, _ := c.Flags().GetString("url"); u != "" {
				e, _, err := adminEnroller(c)
				if err != nil {
					return err
				}
				name, k, err := adminKey(c)
				if err != nil {
					return err
				}
				if err := e.AdminRevoke(context.Background(), name, k.sm2(), serial); err != nil {
					return err
				}
				fmt.Printf("revoked %s (by admin:%s)\n", serial, name)
				return nil
			}
			st, err := openStore(c)
			if err != nil {
				return err
			}
			who := "operator"
			if u, err := user.Current(); err == nil {
				who = "operator:" + u.Username
			}
			rec, err := st.Revoke(serial, who, time.Now())
			if err != nil {
				return err
			}
			fmt.Printf("revoked %s and %s (by %s)\n", rec.Serial, rec.EncSerial, who)
			return nil
		},
	}
	revoke.Flags().String("serial", "", "serial (hex) of the pair's signing certificate")

	recover := &cobra.Command{
		Use:   "recover --url <enrolment URL> --admin-cert <pem> --admin-key <pem> --serial <hex> --out <key file>",
		Short: "Recovers an escrowed encryption key through the server (audited; delivered enveloped to the administrator's key)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			serial, _ := c.Flags().GetString("serial")
			out, _ := c.Flags().GetString("out")
			if serial == "" || out == "" {
				return fmt.Errorf("--serial and --out required")
			}
			e, _, err := adminEnroller(c)
			if err != nil {
				return err
			}
			name, k, err := adminKey(c)
			if err != nil {
				return err
			}
			key, enc, err := e.AdminRecover(context.Background(), name, k.sm2(), serial)
			if err != nil {
				return err
			}
			pemKey, err := pki.MarshalPrivateKeyPEM(key, nil)
			key.D.SetInt64(0)
			if err != nil {
				return err
			}
			f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return err
			}
			_, werr := f.Write(append(pemKey, pki.EncodeCertificatesPEM(enc)...))
			clear(pemKey)
			if cerr := f.Close(); werr == nil {
				werr = cerr
			}
			if werr != nil {
				return werr
			}
			fmt.Printf("recovered the encryption key of %s into %s\n", serial, out)
			return nil
		},
	}
	recover.Flags().String("serial", "", "serial (hex) of the pair's signing or encryption certificate")
	recover.Flags().String("out", "", "file to create (0600) with the key (PKCS#8 PEM) and its certificate")
	for _, c := range []*cobra.Command{revoke, recover} {
		c.Flags().String("url", "", "the gm_enroll base URL (e.g. https://pay.example/.well-known/est)")
		c.Flags().String("admin-cert", "", "administrator signing certificate (PEM; its CN is the admin name)")
		c.Flags().String("admin-key", "", "administrator signing key (PEM)")
	}
	cmd.AddCommand(token, list, revoke, recover)
}

// pkiKey is an administrator identity's SM2 key.
type pkiKey struct{ id *client.Identity }

func (k *pkiKey) sm2() *sm2.PrivateKey { p, _ := k.id.Key.(*sm2.PrivateKey); return p }
