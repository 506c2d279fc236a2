// Command banksim runs the bank simulator standalone for demos and manual tests.
//
//	banksim -scheme unionpay-sm2 -listen 127.0.0.1:9443 -mode tlcp -pki ./banksim-pki
//
// It issues a fresh test PKI (package pki) and writes, under -pki, the PEM files a gateway needs:
// the bank's root and platform signing certificate, the bank's encryption certificate, and the
// platform's signing key and certificate (and TLCP client pair) that the simulator accepts.
package main

import (
	"encoding/hex"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/emmansun/gmsm/smx509"
	"github.com/gmgate/gmgate/integration/banksim"
	"github.com/gmgate/gmgate/pki"
	"github.com/gmgate/gmgate/tlcp"
)

func main() {
	var (
		scheme  = flag.String("scheme", banksim.UnionPay, "signature scheme: unionpay-sm2, form-sm2, http-sig-sm2, wechatpay-v3-sm2")
		listen  = flag.String("listen", "127.0.0.1:9443", "listen address")
		mode    = flag.String("mode", "tlcp", "transport: http or tlcp (mutual auth)")
		target  = flag.String("encrypt", "", "encryption target: '', body or fields")
		cipher  = flag.String("cipher", "sm4-gcm", "cipher: sm4-gcm, sm4-cbc, sm2-envelope")
		fields  = flag.String("fields", "accNo,idNo,phone", "comma-separated fields for -encrypt fields")
		sm4hex  = flag.String("sm4-key", "", "channel SM4 data key, 32 hex digits (sm4-gcm, sm4-cbc)")
		misbe   = flag.String("misbehave", "", "global misbehaviour: bad-signature, wrong-cert, wrong-key, tamper-ciphertext, tamper-after-sign, unsigned, slow, drop")
		delay   = flag.Duration("delay", 2*time.Second, "delay of the slow misbehaviour")
		pkiDir  = flag.String("pki", "banksim-pki", "directory for the generated PEM files")
		host    = flag.String("host", "bank.test", "DNS name in the bank's TLCP certificate")
		rawSig  = flag.String("raw", "", "force raw r||s (true) or DER (false) signatures; default per scheme")
		hexText = flag.Bool("hex", false, "hex signature text instead of Base64")
	)
	flag.Parse()
	p, err := banksim.NewTestPKI(*host)
	if err != nil {
		log.Fatal(err)
	}
	prof := banksim.Profile{Scheme: *scheme, Target: *target, Cipher: *cipher, Hex: *hexText}
	if *target == "fields" {
		prof.Fields = strings.Split(*fields, ",")
	}
	if *rawSig != "" {
		b := *rawSig == "true"
		prof.Raw = &b
	}
	if *target != "" && *cipher != "sm2-envelope" {
		if prof.SM4Key, err = hex.DecodeString(*sm4hex); err != nil || len(prof.SM4Key) != 16 {
			log.Fatal("-sm4-key must be 32 hex digits")
		}
	}
	opts := banksim.FromTestPKI(p, prof)
	opts.Delay = *delay
	srv, err := banksim.New(opts)
	if err != nil {
		log.Fatal(err)
	}
	srv.SetMisbehaviour(banksim.Misbehaviour(*misbe))
	if err := writePKI(*pkiDir, p); err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	switch *mode {
	case "http":
		err = srv.Serve(ln, "http")
	case "tlcp":
		err = srv.Serve(tlcp.NewListener(ln, p.ServerTLCPConfig()), "https")
	default:
		log.Fatalf("unknown -mode %q", *mode)
	}
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("banksim %s over %s at %s (PEM files in %s; %s)\n", *scheme, *mode, srv.URL, *pkiDir, p.Describe())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	<-sig
	srv.Close()
}

func writePKI(dir string, p *banksim.TestPKI) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	certs := map[string][]*smx509.Certificate{
		"bank-root.pem":          {p.BankRoot.Cert},
		"bank-sign.pem":          {p.BankSign.Cert},
		"bank-enc.pem":           {p.BankEnc.Cert},
		"platform-root.pem":      {p.PlatformRoot.Cert},
		"platform-sign.pem":      {p.PlatformSign.Cert},
		"platform-enc.pem":       {p.PlatformEnc.Cert},
		"platform-tlcp-sign.pem": {p.PlatformTLCP.Sign.Cert, p.PlatformRoot.Cert},
		"platform-tlcp-enc.pem":  {p.PlatformTLCP.Enc.Cert, p.PlatformRoot.Cert},
	}
	for name, cs := range certs {
		if err := os.WriteFile(filepath.Join(dir, name), pki.EncodeCertificatesPEM(cs...), 0o644); err != nil {
			return err
		}
	}
	keys := map[string]*pki.Issued{
		"platform-sign.key": p.PlatformSign, "platform-enc.key": p.PlatformEnc,
		"platform-tlcp-sign.key": p.PlatformTLCP.Sign, "platform-tlcp-enc.key": p.PlatformTLCP.Enc,
	}
	for name, is := range keys {
		pemKey, err := pki.MarshalPrivateKeyPEM(is.Key, nil)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name), pemKey, 0o600); err != nil {
			return err
		}
	}
	return nil
}
