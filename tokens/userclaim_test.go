package tokens_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard-dev/switchboard/tokens"
)

// An issuer whose sub is not a valid id (Auth0's "auth0|…") names the user in a claim of
// its own, and UserClaim reads it; without UserClaim such a token is refused.
func TestUserClaimNamesTheUserIDClaim(t *testing.T) {
	now := time.Now()
	tok := sign(t, jwt.SigningMethodHS256, secret, "", jwt.MapClaims{
		"sub": "auth0|5f7c8ec7c33c6c004bbafe82", "https://app.example/uid": "u-42", "exp": now.Add(time.Hour).Unix(),
	})
	plain, err := tokens.New(context.Background(), tokens.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	var te *tokens.Error
	if _, err := plain.Verify(context.Background(), tok, now); !errors.As(err, &te) {
		t.Fatalf("a sub with | accepted: %v", err)
	}
	custom, err := tokens.New(context.Background(), tokens.Config{Secret: secret, UserClaim: "https://app.example/uid"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := custom.Verify(context.Background(), tok, now)
	if err != nil || c.Subject != "u-42" {
		t.Fatalf("with UserClaim: %+v, %v; want user u-42", c, err)
	}
	missing := sign(t, jwt.SigningMethodHS256, secret, "", jwt.MapClaims{"sub": "alice", "exp": now.Add(time.Hour).Unix()})
	if _, err := custom.Verify(context.Background(), missing, now); !errors.As(err, &te) {
		t.Fatalf("a token without the user claim accepted: %v", err)
	}
}
