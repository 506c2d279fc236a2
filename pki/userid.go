package pki

// DefaultUserID is the SM2 default distinguishing identifier (GB/T 32918, GB/T 35276):
// "1234567812345678", the user ID of an SM2 signature when none is agreed. It is a constant: every
// package that needs it (keyvault, signing, tlcp) reads this one.
const DefaultUserID = "1234567812345678"
