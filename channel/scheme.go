package channel

import "github.com/gmgate/gmgate/signing"

// isParamScheme reports whether the scheme carries its signature inside the body parameters
// (the scheme fact is signing.SignsInHeader).
func isParamScheme(name string) bool { return !signing.SignsInHeader(name) }
