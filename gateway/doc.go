// Package gateway holds the core of gmgate's inbound side (gm_verify) that
// does not depend on Caddy: replay protection, digital envelopes, the audit
// log and the reason codes of every rejection.
//
// # Replay protection
//
// ReplayGuard checks that a signed timestamp lies within Window (default 5
// minutes) of the gateway clock and stores (key ID, nonce) for 2×Window in a
// ReplayStore: MemoryReplayStore (one instance; bounded, fails closed with
// ErrReplayStoreFull rather than evicting live nonces) or RedisReplayStore
// (every instance; "SET <prefix><hex SM3(keyID,nonce)> 1 NX PX <ms>"). When the
// store cannot answer, the guard fails closed (ErrReplayStoreUnavailable,
// HTTP 503) unless FailOpen.
//
// # Digital envelopes
//
// envelope.Opener opens a request body that is a PKCS#7 EnvelopedData
// (content type 1.2.840.113549.1.7.3 or GM/T 0010 1.2.156.10197.6.1.4.2.3)
// whose content is encrypted with SM4-CBC (1.2.156.10197.1.104.2, or the bare
// SM4 OID with an IV) or SM4-GCM (1.2.156.10197.1.104.8) under a 16-byte key,
// itself SM2-encrypted (GM/T 0009 ASN.1 C1C3C2; the legacy CFCA raw C1C2C3
// form only with AllowCFCA) for the platform encryption certificate, named by
// issuer and serial or by subject key identifier. The body may be DER, PEM
// ("PKCS7", "CMS" or "ENVELOPED DATA") or Base64 (standard or URL alphabet,
// padding and line breaks optional). Decoding uses gmsm's pkcs7 through a
// pkcs7.Session that calls the platform key's crypto.Decrypter, so the key
// never has to be a concrete *sm2.PrivateKey (HSM and vault keys work when
// their Decrypt accepts the ASN.1 ciphertext with nil options). envelope.Seal
// produces the same structure for a client's encryption certificate.
//
// EncryptedFields opens JSON bodies whose listed fields are encrypted, in one
// of two documented formats:
//
//   - FieldModeSM2: the field's value is a JSON string holding standard
//     padded Base64 of the SM2 ciphertext (GM/T 0009 ASN.1:
//     SEQUENCE{INTEGER x, INTEGER y, OCTET STRING C3, OCTET STRING C2}) of the
//     UTF-8 plaintext, encrypted to the platform encryption public key.
//   - FieldModeSM4GCM: the object has a top-level string field KeyField
//     (default "encrypt_key") holding Base64 of the SM2 ASN.1 ciphertext of a
//     fresh 16-byte SM4 key; each listed field holds Base64 of
//     nonce(12 bytes) || SM4-GCM ciphertext || tag(16 bytes), computed with the
//     field's dotted path (e.g. "payer.card_no") as additional authenticated
//     data, so ciphertexts cannot be moved between fields. KeyField is removed
//     from the opened body.
//
// Opened values replace the ciphertexts as JSON strings; key order and
// number spelling are kept, duplicate keys and nesting deeper than
// MaxJSONDepth are rejected. Verify the request signature over the body as
// received before opening it, so that nobody can use the gateway as a
// decryption oracle.
//
// # Audit log
//
// The evidence log of docs/audit.md is package audit; the Verifier writes to it through audit.Sink.
//
// # Errors
//
// Code, CodeOf, WriteError: every rejection maps to one stable code, an HTTP
// status (401, 400 for malformed input, 413, 503) and a JSON body
// {"code":..., "message":...} that carries no internal detail. Code and Error are
// refusal.Code and refusal.Error; the body is written by package refusal, the one
// refusal writer gm_channel uses too.
package gateway
