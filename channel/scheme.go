package channel

import "github.com/gmgate/gmgate/signing"

// isParamScheme reports whether the scheme carries its signature inside the body parameters.
func isParamScheme(name string) bool {
	return name == signing.UnionPayName || name == signing.FormName
}
