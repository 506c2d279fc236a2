package caddymodule

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/emmansun/gmsm/smx509"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/gmgate/gmgate/audit"
	"github.com/gmgate/gmgate/keyvault"
	"github.com/gmgate/gmgate/pki"
)

// CommandPrefix starts the name of every gmgate subcommand registered with Caddy
// (gmgate-pki, gmgate-vault, gmgate-audit, gmgate-demo): Caddy panics at start when two plugins
// register one command name, and "pki" or "audit" are names another plugin may want. The gmgate
// binary also accepts the short names (ShortCommand).
const CommandPrefix = "gmgate-"

// ShortCommands are the gmgate subcommands the gmgate binary accepts without CommandPrefix.
var shortCommands = map[string]bool{"pki": true, "vault": true, "audit": true, "demo": true}

// ShortCommand rewrites a gmgate binary's arguments so that `gmgate audit verify ...` runs the
// registered gmgate-audit command; other arguments are returned unchanged.
func ShortCommand(args []string) []string {
	if len(args) > 1 && shortCommands[args[1]] {
		out := append([]string{args[0], CommandPrefix + args[1]}, args[2:]...)
		return out
	}
	return args
}

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:      CommandPrefix + "pki",
		Usage:     "init|issue|show|crl ...",
		Short:     "Manages GM (SM2) certificates: root CA, TLCP server/client pairs, platform certificates, CRLs",
		CobraFunc: pkiCommand,
	})
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:      CommandPrefix + "vault",
		Usage:     "init|generate|import|list|export-public|csr|rotate --config <Caddyfile> ...",
		Short:     "Manages the keys of the gmgate key vault declared in a config",
		CobraFunc: vaultCommand,
	})
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:      CommandPrefix + "audit",
		Usage:     "verify --cert <platform cert> <log file...>",
		Short:     "Verifies the hash chain and signed checkpoints of gmgate audit logs",
		CobraFunc: auditCommand,
	})
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:      CommandPrefix + "demo",
		Usage:     "pay [--url https://localhost:8443] [--dir <development PKI dir>] [--suite <TLCP suite>]",
		Short:     "Sends one SM2-signed payment over TLCP as the development PKI's demo terminal (Caddyfile.example)",
		CobraFunc: demoCommand, // demo.go
	})
}

// ---- gmgate pki ----

func pkiCommand(cmd *cobra.Command) {
	initCmd := &cobra.Command{
		Use:   "init --dir <dir> [--cn <name>] [--org <org>] [--validity <duration>]",
		Short: "Creates an SM2 root CA (root.pem, root.key) in dir",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			dir, _ := c.Flags().GetString("dir")
			opts := issueOptions(c)
			if opts.CommonName == "" {
				opts.CommonName = "gmgate Root CA"
			}
			if _, err := os.Stat(filepath.Join(dir, "root.key")); err == nil {
				return fmt.Errorf("%s already holds a root CA", dir)
			}
			ca, key, err := pki.NewRootCA(opts)
			if err != nil {
				return err
			}
			if err := writeIssued(dir, "root", &pki.Issued{Cert: ca.Cert, Key: key}); err != nil {
				return err
			}
			fmt.Printf("root CA %q written to %s (serial %s)\n", ca.Cert.Subject.CommonName, filepath.Join(dir, "root.pem"), ca.Cert.SerialNumber.Text(16))
			return nil
		},
	}
	initCmd.Flags().String("dir", ".", "directory for root.pem and root.key")
	addIssueFlags(initCmd)

	issueCmd := &cobra.Command{
		Use:   "issue server|client|platform --ca-dir <dir> --cn <name> [--san <name,...>] [--out <prefix>]",
		Short: "Issues a TLCP server pair, a client pair (sign + enc) or a platform signing certificate",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			ca, err := loadCA(c)
			if err != nil {
				return err
			}
			opts := issueOptions(c)
			if opts.CommonName == "" {
				return errors.New("--cn is required")
			}
			out, _ := c.Flags().GetString("out")
			if out == "" {
				out = args[0]
			}
			switch args[0] {
			case "server", "client":
				issue := ca.IssueServerPair
				if args[0] == "client" {
					issue = ca.IssueClientPair
				}
				pair, err := issue(opts)
				if err != nil {
					return err
				}
				if err := writeIssued(filepath.Dir(out), filepath.Base(out)+"_sign", pair.Sign); err != nil {
					return err
				}
				if err := writeIssued(filepath.Dir(out), filepath.Base(out)+"_enc", pair.Enc); err != nil {
					return err
				}
				fmt.Printf("%s pair issued: %s_sign.{pem,key} (serial %s), %s_enc.{pem,key} (serial %s)\n",
					args[0], out, pair.Sign.Cert.SerialNumber.Text(16), out, pair.Enc.Cert.SerialNumber.Text(16))
			case "platform":
				iss, err := ca.IssuePlatform(opts)
				if err != nil {
					return err
				}
				if err := writeIssued(filepath.Dir(out), filepath.Base(out), iss); err != nil {
					return err
				}
				fmt.Printf("platform certificate issued: %s.{pem,key} (serial %s)\n", out, iss.Cert.SerialNumber.Text(16))
			default:
				return fmt.Errorf("unknown kind %q: want server, client or platform", args[0])
			}
			return nil
		},
	}
	issueCmd.Flags().String("ca-dir", ".", "directory holding root.pem and root.key")
	issueCmd.Flags().String("out", "", "output path prefix (default: the kind)")
	addIssueFlags(issueCmd)

	showCmd := &cobra.Command{
		Use:   "show <certificate.pem>",
		Short: "Prints a human-readable dump of GM certificates",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			certs, err := pki.LoadCertificatesFile(args[0])
			if err != nil {
				return err
			}
			for i, c := range certs {
				if i > 0 {
					fmt.Println()
				}
				fmt.Print(pki.Describe(c))
			}
			return nil
		},
	}

	crlCmd := &cobra.Command{
		Use:   "crl --ca-dir <dir> [--revoke <serial hex>]... [--crl <file>] [--next-update <duration>]",
		Short: "Revokes certificates by serial and writes the CA's CRL (keeping earlier revocations)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			ca, err := loadCA(c)
			if err != nil {
				return err
			}
			caDir, _ := c.Flags().GetString("ca-dir")
			crlPath, _ := c.Flags().GetString("crl")
			if crlPath == "" {
				crlPath = filepath.Join(caDir, "crl.pem")
			}
			serials, _ := c.Flags().GetStringSlice("revoke")
			next, _ := c.Flags().GetDuration("next-update")
			var entries []smx509.RevocationListEntry
			number := big.NewInt(1)
			if data, err := os.ReadFile(crlPath); err == nil {
				old, err := pki.ParseCRL(data)
				if err != nil {
					return fmt.Errorf("existing CRL %s: %w", crlPath, err)
				}
				entries = append(entries, old.RevokedCertificateEntries...)
				if old.Number != nil {
					number.Add(old.Number, big.NewInt(1))
				}
			}
			now := time.Now()
			for _, s := range serials {
				n, ok := new(big.Int).SetString(strings.TrimPrefix(strings.ToLower(s), "0x"), 16)
				if !ok {
					return fmt.Errorf("serial %q is not hexadecimal", s)
				}
				entries = append(entries, smx509.RevocationListEntry{SerialNumber: n, RevocationTime: now})
			}
			der, err := ca.CreateCRL(entries, number, next)
			if err != nil {
				return err
			}
			if err := os.WriteFile(crlPath, pki.EncodeCRLPEM(der), 0o644); err != nil {
				return err
			}
			fmt.Printf("CRL #%s with %d revoked certificate(s) written to %s\n", number, len(entries), crlPath)
			return nil
		},
	}
	crlCmd.Flags().String("ca-dir", ".", "directory holding root.pem and root.key")
	crlCmd.Flags().StringSlice("revoke", nil, "serial number (hex) to revoke; repeatable")
	crlCmd.Flags().String("crl", "", "CRL file to update (default <ca-dir>/crl.pem)")
	crlCmd.Flags().Duration("next-update", 7*24*time.Hour, "time until the CRL's nextUpdate")

	cmd.AddCommand(initCmd, issueCmd, showCmd, crlCmd)
}

func addIssueFlags(c *cobra.Command) {
	c.Flags().String("cn", "", "subject common name")
	c.Flags().StringSlice("org", nil, "subject organization")
	c.Flags().StringSlice("san", nil, "DNS names and IP addresses (comma separated)")
	c.Flags().Duration("validity", 0, "validity period (default: 10 years for a CA, 1 year for a leaf)")
}

func issueOptions(c *cobra.Command) pki.IssueOptions {
	var o pki.IssueOptions
	o.CommonName, _ = c.Flags().GetString("cn")
	o.Organization, _ = c.Flags().GetStringSlice("org")
	o.Validity, _ = c.Flags().GetDuration("validity")
	sans, _ := c.Flags().GetStringSlice("san")
	for _, s := range sans {
		if ip := net.ParseIP(s); ip != nil {
			o.IPAddresses = append(o.IPAddresses, ip)
		} else if s != "" {
			o.DNSNames = append(o.DNSNames, s)
		}
	}
	return o
}

func loadCA(c *cobra.Command) (*pki.CA, error) {
	dir, _ := c.Flags().GetString("ca-dir")
	certs, err := pki.LoadCertificatesFile(filepath.Join(dir, "root.pem"))
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	key, err := pki.LoadPrivateKeyFile(filepath.Join(dir, "root.key"), nil)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	return &pki.CA{Cert: certs[0], Key: key}, nil
}

// writeIssued writes <dir>/<base>.pem (0644) and, when the key is known, <dir>/<base>.key (0600).
func writeIssued(dir, base string, iss *pki.Issued) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, base+".pem"), pki.EncodeCertificatesPEM(iss.Cert), 0o644); err != nil {
		return err
	}
	if iss.Key == nil {
		return nil
	}
	keyPEM, err := pki.MarshalPrivateKeyPEM(iss.Key, nil)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, base+".key"), keyPEM, 0o600)
}

// ---- gmgate vault ----

func vaultCommand(cmd *cobra.Command) {
	cmd.PersistentFlags().StringP("config", "c", "Caddyfile", "config declaring the vault (gmgate { vault { ... } })")
	cmd.PersistentFlags().StringP("adapter", "a", "", "config adapter (default: by file name)")
	cmd.PersistentFlags().Bool("json", false, "print JSON for scripts")

	run := func(use, short string, nargs int, do func(c *cobra.Command, v *keyvault.Vault, args []string) (any, error)) *cobra.Command {
		return &cobra.Command{
			Use: use, Short: short, Args: cobra.ExactArgs(nargs),
			RunE: func(c *cobra.Command, args []string) error {
				v, err := openVaultFromConfig(c)
				if err != nil {
					return err
				}
				defer v.Close()
				out, err := do(c, v, args)
				if err != nil {
					return err
				}
				return printResult(c, out)
			},
		}
	}
	initCmd := run("init [--token <name>]", "Creates the AES-256 key-encryption key in wrapped-mode tokens", 0,
		func(c *cobra.Command, v *keyvault.Vault, _ []string) (any, error) {
			tok, _ := c.Flags().GetString("token")
			return v.Init(tok)
		})
	initCmd.Flags().String("token", "", "token name (default: every wrapped-mode token)")
	generate := run("generate <key name>", "Generates the declared key in its token", 1,
		func(_ *cobra.Command, v *keyvault.Vault, a []string) (any, error) { return v.Generate(a[0]) })
	importCmd := run("import <key name> <PEM file>", "Imports a PKCS#8 SM2 key (or SM4 key) into the declared key's token", 2,
		func(c *cobra.Command, v *keyvault.Vault, a []string) (any, error) {
			data, err := os.ReadFile(a[1])
			if err != nil {
				return nil, err
			}
			var pw []byte
			if env, _ := c.Flags().GetString("password-env"); env != "" {
				pw = []byte(os.Getenv(env))
			}
			return v.Import(a[0], data, pw)
		})
	importCmd.Flags().String("password-env", "", "environment variable holding the PKCS#8 password")
	list := run("list", "Lists the vault's keys, versions and tokens", 0,
		func(_ *cobra.Command, v *keyvault.Vault, _ []string) (any, error) { return v.List() })
	export := run("export-public <key name>", "Prints the public key (and certificate) of a key", 1,
		func(_ *cobra.Command, v *keyvault.Vault, a []string) (any, error) { return v.ExportPublic(a[0]) })
	csr := run("csr <key name> --cn <name> [--san ...]", "Makes an SM2 certificate signing request signed in the vault", 1,
		func(c *cobra.Command, v *keyvault.Vault, a []string) (any, error) {
			o := issueOptions(c)
			req := keyvault.CSRRequest{DNSNames: o.DNSNames, IPAddresses: o.IPAddresses}
			req.Subject.CommonName = o.CommonName
			req.Subject.Organization = o.Organization
			return v.CSR(a[0], req)
		})
	addIssueFlags(csr)
	rotate := run("rotate <key name>", "Makes a new current version of a key (old versions stay usable for decryption and verification)", 1,
		func(_ *cobra.Command, v *keyvault.Vault, a []string) (any, error) { return v.Rotate(a[0]) })
	cmd.AddCommand(initCmd, generate, importCmd, list, export, csr, rotate)
}

// openVaultFromConfig adapts the config and opens the gmgate app's vault with admin rights.
func openVaultFromConfig(c *cobra.Command) (*keyvault.Vault, error) {
	cfgFile, _ := c.Flags().GetString("config")
	adapter, _ := c.Flags().GetString("adapter")
	raw, _, _, err := caddycmd.LoadConfig(cfgFile, adapter)
	if err != nil {
		return nil, err
	}
	var cfg struct {
		Apps struct {
			Gmgate App `json:"gmgate"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("reading %s: %w", cfgFile, err)
	}
	if len(cfg.Apps.Gmgate.Vault.Keys) == 0 && len(cfg.Apps.Gmgate.Vault.Tokens) == 0 {
		return nil, fmt.Errorf("%s declares no vault (gmgate { vault { ... } })", cfgFile)
	}
	return keyvault.Open(cfg.Apps.Gmgate.Vault, keyvault.WithAdmin())
}

func printResult(c *cobra.Command, v any) error {
	if asJSON, _ := c.Flags().GetBool("json"); asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	switch x := v.(type) {
	case fmt.Stringer:
		fmt.Println(x.String())
	case []keyvault.InitResult:
		for _, r := range x {
			fmt.Println(r.String())
		}
	case []keyvault.KeyInfo:
		for _, r := range x {
			fmt.Println(r.String())
		}
	default:
		fmt.Printf("%+v\n", v)
	}
	return nil
}

// ---- gmgate audit ----

// Exit codes of `gmgate audit verify`, one per kind of incompleteness, so that scripts can tell
// them apart. An operator accepts a known one with --accept (for example mid_chain_start after
// archiving old segments, unsealed_tail on a log still being written).
var auditExitCodes = map[audit.Problem]int{
	audit.ProblemTampered:        2,
	audit.ProblemNoCheckpoint:    3,
	audit.ProblemTailDeleted:     4,
	audit.ProblemWitnessMismatch: 2,
	audit.ProblemMidChainStart:   5,
	audit.ProblemUnsealedTail:    6,
	audit.ProblemCrashRecovered:  7,
}

func auditCommand(cmd *cobra.Command) {
	verify := &cobra.Command{
		Use:   "verify --cert <platform cert.pem> [--witness-redis addr | --witness-file heads.jsonl] [--accept problem,...] <log base or segment file...>",
		Short: "Proves an audit log intact and complete; a distinct exit code per problem",
		Long: `Verifies the hash chain and every signed checkpoint, then what an intact chain can still lack.
Exit codes: 0 intact and complete; 1 usage or I/O error; 2 tampered (edited, deleted, inserted,
reordered entries, forged checkpoint, or a checkpoint that differs from the witnessed head);
3 no_checkpoint (nothing signed by the platform key); 4 tail_deleted (a witnessed head or a sealed
rotation promises entries that are missing); 5 mid_chain_start (oldest segments missing);
6 unsealed_tail (entries after the last checkpoint); 7 crash_recovered (restarts cut a torn line).
--accept lists problems the operator knows about (e.g. --accept mid_chain_start,unsealed_tail).`,
		Args: cobra.MinimumNArgs(1),
		RunE: caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
			args := fl.Args()
			certFile := fl.String("cert")
			if certFile == "" {
				return 1, errors.New("--cert (the platform certificate that signs checkpoints) is required")
			}
			accept := map[audit.Problem]bool{}
			for _, a := range strings.Split(fl.String("accept"), ",") {
				if a = strings.TrimSpace(a); a == "" {
					continue
				}
				if !slices.Contains(audit.AllProblems(), audit.Problem(a)) || a == string(audit.ProblemTampered) {
					return 1, fmt.Errorf("--accept: unknown or unacceptable problem %q", a)
				}
				accept[audit.Problem(a)] = true
			}
			certs, err := pki.LoadCertificatesFile(certFile)
			if err != nil {
				return 1, err
			}
			pub, ok := certs[0].PublicKey.(*ecdsa.PublicKey)
			if !ok {
				return 1, errors.New("the certificate does not hold an SM2 public key")
			}
			var files []string
			for _, a := range args {
				if segs, err := audit.Segments(a); err == nil && len(segs) > 0 {
					files = append(files, segs...)
				} else {
					files = append(files, a)
				}
			}
			rep, verr := audit.VerifyFile(files, pub)
			if verr != nil && (rep == nil || rep.Entries == 0 && rep.Failure == nil) {
				return 1, verr // unreadable files, not a verdict
			}
			var werr error
			var heads []audit.SignedHead
			witnessAsked := false
			if addr := fl.String("witness-redis"); addr != "" && verr == nil {
				witnessAsked = true
				opts := &redis.Options{Addr: addr}
				if env := fl.String("witness-redis-password-env"); env != "" {
					opts.Password = os.Getenv(env)
				}
				cl := redis.NewClient(opts)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				hs, err := (&audit.RedisWitness{Client: cl}).Heads(ctx, rep.LogID, 1000)
				cancel()
				cl.Close()
				if err != nil {
					return 1, fmt.Errorf("reading the witness: %w", err)
				}
				heads = append(heads, hs...)
			}
			if f := fl.String("witness-file"); f != "" && verr == nil {
				witnessAsked = true
				data, err := os.ReadFile(f)
				if err != nil {
					return 1, err
				}
				hs, err := audit.ParseSignedHeads(data)
				if err != nil {
					return 1, err
				}
				heads = append(heads, hs...)
			}
			if witnessAsked {
				rep.Witnessed, werr = audit.CheckWitness(rep, heads, pub)
				if errors.Is(werr, audit.ErrWitnessNone) {
					return 1, werr
				}
			}
			problems := rep.Problems(verr, werr)
			code := 0
			var open []string
			for _, p := range problems {
				if accept[p] {
					continue
				}
				open = append(open, string(p))
				if code == 0 {
					code = auditExitCodes[p]
				}
			}
			if fl.Bool("json") {
				out := struct {
					*audit.VerifyReport
					Problems []audit.Problem `json:"problems"`
					Accepted []string        `json:"accepted,omitempty"`
					Intact   bool            `json:"intact"`
				}{VerifyReport: rep, Problems: problems, Intact: code == 0}
				if out.Problems == nil {
					out.Problems = []audit.Problem{}
				}
				for p := range accept {
					out.Accepted = append(out.Accepted, string(p))
				}
				sort.Strings(out.Accepted)
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(out); err != nil {
					return 1, err
				}
			} else {
				fmt.Printf("%d file(s), %d entries (%d decisions, %d checkpoints), seq %d..%d, unsealed tail %d\n",
					rep.Files, rep.Entries, rep.Decisions, rep.Checkpoints, rep.FirstSeq, rep.LastSeq, rep.UnsealedTail)
				if rep.Witnessed != nil {
					fmt.Printf("witnessed head: seq %d (%s)\n", rep.Witnessed.Seq, rep.Witnessed.Time)
				}
				for _, p := range problems {
					state := "FAIL"
					if accept[p] {
						state = "accepted"
					}
					fmt.Printf("%s: %s\n", state, p)
				}
				if code == 0 {
					fmt.Println("audit log intact")
				}
			}
			if code != 0 {
				err := fmt.Errorf("audit log not intact: %s", strings.Join(open, ", "))
				if verr != nil {
					err = verr
				} else if werr != nil {
					err = fmt.Errorf("%w (%s)", werr, strings.Join(open, ", "))
				}
				return code, err
			}
			return 0, nil
		}),
	}
	verify.Flags().String("cert", "", "platform certificate (PEM) whose key signs the checkpoints")
	verify.Flags().Bool("json", false, "print only the report, as JSON, on stdout")
	verify.Flags().String("accept", "", "comma-separated problems to accept: no_checkpoint, tail_deleted, mid_chain_start, unsealed_tail, crash_recovered")
	verify.Flags().String("witness-redis", "", "Redis address holding the log's signed heads (the gmgate { audit { witness_redis } })")
	verify.Flags().String("witness-redis-password-env", "", "environment variable holding that Redis's password")
	verify.Flags().String("witness-file", "", "signed heads exported from a witness, as JSON lines or a JSON array")
	cmd.AddCommand(verify)
}
