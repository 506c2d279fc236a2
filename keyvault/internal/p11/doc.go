// Package p11 is the one place keyvault reaches a PKCS#11 library. Built with cgo it is
// github.com/miekg/pkcs11 under the same names (type aliases, no wrapper: behaviour is exactly
// miekg/pkcs11's). Built without cgo (CGO_ENABLED=0) miekg/pkcs11 has no Ctx at all, so this
// package declares the same identifiers with New returning nil and every Ctx method failing:
// keyvault then compiles, serves file: keys, and refuses every PKCS#11 token at open.
//
// Only the identifiers keyvault uses are declared. Constants (CKA_*, CKM_*, CKR_*, ...) come
// from miekg/pkcs11 directly: its generated constants build without cgo.
package p11
