package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/emmansun/gmsm/sm2"
	"github.com/spf13/cobra"

	"github.com/gmgate/gmgate/client"
	"github.com/gmgate/gmgate/enroll"
	"github.com/gmgate/gmgate/keyvault"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/sealstore"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:      CommandPrefix + "enroll",
		Usage:     "token|list|revoke|recover|migrate --config <Caddyfile> ...",
		Short:     "Terminal enrolment (gm_enroll): issues one-time tokens, lists pairs, revokes, recovers escrowed keys",
		CobraFunc: enrollCommand,
	})
	shortCommands["enroll"] = true
}

func enrollCommand(cmd *cobra.Command) {
	cmd.PersistentFlags().StringP("config", "c", "Caddyfile", "the config the server runs (its gm_enroll store, store_key and the vault)")
	cmd.PersistentFlags().StringP("adapter", "a", "", "config adapter (default: by file name)")
	cmd.PersistentFlags().String("store", "", "which gm_enroll of the config, by its store directory (when it has several)")
	cmd.PersistentFlags().Bool("json", false, "print JSON for scripts")
	// openStore opens the store of the config's gm_enroll with its store_key, as the server
	// does: what the commands write verifies at the server, what they read is verified.
	var closeVault func()
	openStore := func(c *cobra.Command) (*enroll.FileStore, error) {
		st, closeFn, err := openEnrollStoreFromConfig(c)
		closeVault = closeFn
		return st, err
	}
	cmd.PersistentPostRun = func(*cobra.Command, []string) {
		if closeVault != nil {
			closeVault()
		}
	}
	token := &cobra.Command{
		Use:   "token --config <Caddyfile> --profile <name> [--cn <terminal id>] [--ttl 24h] [--note text]",
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
		Use:   "list --config <Caddyfile>",
		Short: "Lists tokens (without secrets) and issued pairs with their state",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			st, err := openStore(c)
			if err != nil {
				return err
			}
			toks, terr := st.Tokens()
			if terr != nil && !errors.Is(terr, enroll.ErrIntegrity) {
				return terr
			}
			certs, cerr := st.Certs()
			if cerr != nil && !errors.Is(cerr, enroll.ErrIntegrity) {
				return cerr
			}
			// Records that fail their integrity check are listed as refused, and make the
			// command fail after the listing.
			refused := errors.Join(terr, cerr)
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
				if err := json.NewEncoder(os.Stdout).Encode(map[string]any{"tokens": toks, "certificates": cv}); err != nil {
					return err
				}
				return refused
			}
			for _, t := range toks {
				state := "unused"
				switch {
				case t.Used:
					state = "used"
				case t.Reserved:
					state = "reserved" // an issuance holds it, or one was cut off: issue a new token
				case now.After(t.NotAfter):
					state = "expired"
				}
				fmt.Printf("token %s profile=%s cn=%q %s until %s\n", t.ID, t.Profile, t.CommonName, state, t.NotAfter.Format(time.RFC3339))
			}
			for _, r := range cv {
				fmt.Printf("pair %s enc=%s cn=%q profile=%s %s until %s via %s\n", r.Serial, r.EncSerial, r.CommonName, r.Profile, r.State, r.NotAfter.Format(time.RFC3339), r.Via)
			}
			return refused
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
		Use:   "revoke --serial <hex> (--config <Caddyfile> | --url <enrolment URL> --admin-cert <pem> --admin-key <pem>)",
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
	migrate := &cobra.Command{
		Use:   "migrate --config <Caddyfile> [--yes]",
		Short: "Tags the records an older gmgate wrote in the store with store_key (after you checked them)",
		Long: `Records written before the enrolment store was authenticated carry no tag and are refused.
migrate lists them (and the records it cannot vouch for); with --yes it tags them under the
current version of store_key. Tagging vouches for the records as they are now: check the store
(gmgate enroll list of an older gmgate, or your backups) before confirming. Records that do
not parse as an older record, or whose tag does not verify, are never tagged.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			st, err := openStore(c)
			if err != nil {
				return err
			}
			yes, _ := c.Flags().GetBool("yes")
			m, err := st.Migrate(yes)
			if err != nil {
				return err
			}
			if j, _ := c.Flags().GetBool("json"); j {
				if err := json.NewEncoder(os.Stdout).Encode(map[string]any{"applied": yes, "tagged": m.Tagged, "refused": m.Refused, "current": m.Current}); err != nil {
					return err
				}
			} else {
				verb := "would tag"
				if yes {
					verb = "tagged"
				}
				for _, r := range m.Tagged {
					fmt.Printf("%s %s\n", verb, r)
				}
				for _, r := range m.Refused {
					fmt.Printf("refused %s (not an older record, or its tag does not verify: remove or restore it)\n", r)
				}
				fmt.Printf("%d record(s) already authenticated\n", m.Current)
				if !yes && len(m.Tagged) > 0 {
					fmt.Println("check these records, then run again with --yes to tag them")
				}
			}
			if len(m.Refused) > 0 {
				return fmt.Errorf("%d record(s) refused", len(m.Refused))
			}
			return nil
		},
	}
	migrate.Flags().Bool("yes", false, "tag the records (without it: only list them)")
	cmd.AddCommand(token, list, revoke, recover, migrate)
}

// openEnrollStoreFromConfig adapts the config, finds its gm_enroll (the one whose store is
// --store when there are several) and opens that store with its store_key from the config's
// vault (the development key with the development PKI). The returned function closes the
// vault.
func openEnrollStoreFromConfig(c *cobra.Command) (*enroll.FileStore, func(), error) {
	cfgFile, _ := c.Flags().GetString("config")
	adapter, _ := c.Flags().GetString("adapter")
	want, _ := c.Flags().GetString("store")
	raw, _, _, err := caddycmd.LoadConfig(cfgFile, adapter)
	if err != nil {
		return nil, nil, err
	}
	var cfg struct {
		Apps struct {
			Gmgate App `json:"gmgate"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", cfgFile, err)
	}
	var all []json.RawMessage
	findHandlers(raw, "gm_enroll", &all)
	var picked []*Enroll
	var stores []string
	for _, r := range all {
		h := new(Enroll)
		if err := json.Unmarshal(r, h); err != nil {
			return nil, nil, fmt.Errorf("reading %s: gm_enroll: %w", cfgFile, err)
		}
		h.enrollDefaults()
		stores = append(stores, h.Store)
		if want == "" || filepath.Clean(want) == filepath.Clean(h.Store) {
			picked = append(picked, h)
		}
	}
	switch {
	case len(all) == 0:
		return nil, nil, fmt.Errorf("%s has no gm_enroll handler", cfgFile)
	case len(picked) == 0:
		return nil, nil, fmt.Errorf("%s has no gm_enroll with store %s (its stores: %s)", cfgFile, want, strings.Join(stores, ", "))
	case len(picked) > 1:
		return nil, nil, fmt.Errorf("%s has several gm_enroll handlers: name one with --store (%s)", cfgFile, strings.Join(stores, ", "))
	}
	h := picked[0]
	if _, err := os.Stat(h.Store); err != nil {
		return nil, nil, fmt.Errorf("store %s: %w", h.Store, err)
	}
	app := cfg.Apps.Gmgate
	vcfg := app.Vault
	name := h.StoreKey
	if name == "" {
		if len(vcfg.Keys) > 0 && app.DevPKI == nil {
			return nil, nil, errors.New("gm_enroll: store_key required: a vault SM4 key that authenticates the enrolment store's records")
		}
		dir := filepath.Join(caddy.AppDataDir(), "gmgate", "devpki")
		if app.DevPKI != nil && app.DevPKI.Dir != "" {
			dir = app.DevPKI.Dir
		}
		name = DevEnrollStoreKey
		vcfg = keyvault.Config{Keys: []keyvault.KeyConfig{{Name: name, Type: keyvault.KeyTypeSM4,
			Ref: "file:" + filepath.Join(dir, DevEnrollStoreKey+".sm4")}}}
	} else {
		// Only the store key (and the tokens): the other keys stay where they are.
		var keys []keyvault.KeyConfig
		for _, k := range vcfg.Keys {
			if k.Name == name {
				keys = append(keys, k)
			}
		}
		if len(keys) == 0 {
			return nil, nil, fmt.Errorf("gm_enroll: store_key %q is not declared in the vault of %s", name, cfgFile)
		}
		vcfg.Keys = keys
	}
	v, err := keyvault.Open(vcfg)
	if err != nil {
		return nil, nil, fmt.Errorf("opening the key vault: %w", err)
	}
	st, err := enroll.OpenFileStore(h.Store, sealstore.VaultKey(v, name))
	if err != nil {
		v.Close()
		return nil, nil, err
	}
	return st, func() { v.Close() }, nil
}

// findHandlers collects every JSON object of raw whose "handler" is name (routes nest in
// subroutes, so the whole tree is searched).
func findHandlers(raw json.RawMessage, name string, out *[]json.RawMessage) {
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) == nil {
		var h string
		if json.Unmarshal(obj["handler"], &h) == nil && h == name {
			*out = append(*out, raw)
			return
		}
		for _, v := range obj {
			findHandlers(v, name, out)
		}
		return
	}
	var arr []json.RawMessage
	if json.Unmarshal(raw, &arr) == nil {
		for _, v := range arr {
			findHandlers(v, name, out)
		}
	}
}

// pkiKey is an administrator identity's SM2 key.
type pkiKey struct{ id *client.Identity }

func (k *pkiKey) sm2() *sm2.PrivateKey { p, _ := k.id.Key.(*sm2.PrivateKey); return p }
