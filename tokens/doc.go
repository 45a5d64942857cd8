// Package tokens verifies the user tokens WebSocket clients present (JWTs signed with an
// HS256 secret, a PEM public key or a key from a JWKS) and reads what they grant: the
// rooms a user may join and the users it may message directly.
//
// The algorithm always follows the key: a secret verifies HS256 only, an RSA key RS256,
// an EC P-256 key ES256, an Ed25519 key EdDSA; a token that names another algorithm for
// that key, or none, is refused whatever its header says.
package tokens
