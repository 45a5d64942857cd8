package tokens

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// errUnknownKID refuses a token whose kid the JWKS does not hold, even after a refetch.
var errUnknownKID = errors.New("unknown kid")

// jwks holds the keys of a JWK Set fetched from a URL, and refetches it: hourly (run), and
// when a token names a kid it lacks (keyFor), at most once per minGap, never making the
// caller wait for that limit.
//
// jwkset fetches and parses the set (NewStorageFromHTTP, without its refresh goroutine) and
// keyfunc picks a token's key from it. jwkset's own refresh-on-unknown-kid is not used: it
// waits on its rate limiter, with the wait's deadline also bounding the fetch, so a connect
// would either wait for the limiter or fetch with too short a deadline.
type jwks struct {
	url      string
	client   *http.Client
	timeout  time.Duration // bounds one fetch
	minGap   time.Duration // least time between the starts of two fetches for unknown kids
	log      *slog.Logger
	failures prometheus.Counter
	keyCount prometheus.Gauge

	// store holds the usable keys, each with its alg set (usableKeys); a fetch replaces them
	// all at once, and a failed fetch leaves them.
	store jwkset.Storage
	kf    keyfunc.Keyfunc

	// fetching is held during a fetch: one at a time. lastFetch, the start of the last
	// fetch, is read and written under it.
	fetching  sync.Mutex
	lastFetch time.Time
}

func newJWKS(ctx context.Context, cfg Config, failures prometheus.Counter, keyCount prometheus.Gauge) (*jwks, error) {
	store := jwkset.NewMemoryStorage()
	// A key without use is a signing key too; keys marked "enc" are not.
	kf, err := keyfunc.New(keyfunc.Options{Ctx: ctx, Storage: store, UseWhitelist: []jwkset.USE{jwkset.UseSig, ""}})
	if err != nil {
		return nil, err
	}
	j := &jwks{
		url: cfg.JWKSURL, client: cfg.HTTPClient, timeout: cfg.JWKSTimeout, minGap: cfg.JWKSMinRefetch,
		log: cfg.Logger.With("jwks", cfg.JWKSURL), failures: failures, keyCount: keyCount,
		store: store, kf: kf,
	}
	// Starting with no key would refuse every token: a wrong URL is better reported now.
	n, err := j.fetch(ctx, time.Now())
	if err != nil {
		return nil, fmt.Errorf("tokens: fetching the JWKS %s: %w", cfg.JWKSURL, err)
	}
	if n == 0 {
		return nil, fmt.Errorf("tokens: the JWKS %s holds no usable signing key (RSA, EC or Ed25519)", cfg.JWKSURL)
	}
	return j, nil
}

// run refetches the set every interval until ctx ends; after a failed fetch it tries again
// sooner (a minute, or interval if shorter), keeping the last good keys meanwhile.
func (j *jwks) run(ctx context.Context, interval time.Duration) error {
	retry := min(interval, time.Minute)
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		j.fetching.Lock()
		_, err := j.fetch(ctx, time.Now())
		j.fetching.Unlock()
		if err != nil && ctx.Err() == nil {
			t.Reset(retry)
		} else {
			t.Reset(interval)
		}
	}
}

// keyFor returns the key (or keys, for a token without kid) that may verify t: the JWKS
// key of t's kid whose alg is t's. An unknown kid refetches the set first if no fetch
// started within minGap before now and none is in progress; otherwise it is refused at
// once: a flood of made-up kids costs the issuer one request per minGap and the
// connecting clients no wait.
func (j *jwks) keyFor(ctx context.Context, t *jwt.Token, now time.Time) (any, error) {
	key, err := j.kf.KeyfuncCtx(ctx)(t)
	if err == nil || !errors.Is(err, jwkset.ErrKeyNotFound) {
		return key, err
	}
	if !j.fetching.TryLock() {
		return nil, errUnknownKID // a fetch is in progress; its keys serve the next token
	}
	if now.Sub(j.lastFetch) < j.minGap {
		j.fetching.Unlock()
		return nil, errUnknownKID
	}
	// The fetch outlives a client that hangs up: its keys serve the next token.
	_, ferr := j.fetch(context.WithoutCancel(ctx), now)
	j.fetching.Unlock()
	if ferr != nil {
		return nil, errUnknownKID
	}
	if key, err = j.kf.KeyfuncCtx(ctx)(t); errors.Is(err, jwkset.ErrKeyNotFound) {
		return nil, errUnknownKID
	}
	return key, err
}

// fetch fetches the set and replaces the keys with its usable ones, returning how many;
// a failure keeps the keys, is logged and counted. The caller holds fetching.
func (j *jwks) fetch(ctx context.Context, now time.Time) (int, error) {
	j.lastFetch = now
	keys, err := j.get(ctx)
	if err == nil {
		err = j.store.KeyReplaceAll(ctx, keys)
	}
	if err != nil {
		j.failures.Inc()
		j.log.Warn("JWKS fetch failed; the last keys stay in use", "err", err)
		return 0, err
	}
	j.keyCount.Set(float64(len(keys)))
	j.log.Debug("JWKS fetched", "keys", len(keys))
	return len(keys), nil
}

// get fetches and parses the set with jwkset and returns its usable keys.
func (j *jwks) get(ctx context.Context) ([]jwkset.JWK, error) {
	fetched, err := jwkset.NewStorageFromHTTP(j.url, jwkset.HTTPClientStorageOptions{
		Client: j.client, Ctx: ctx, HTTPTimeout: j.timeout,
		// No RefreshInterval: jwkset starts no goroutine; run refreshes.
	})
	if err != nil {
		return nil, err
	}
	all, err := fetched.KeyReadAll(ctx)
	if err != nil {
		return nil, err
	}
	return j.usableKeys(all), nil
}

// usableKeys returns the public signing keys of set, each with the alg it verifies set
// (jwkAlg), so that keyfunc's check that a JWK's alg equals the token's settles the
// algorithm. Symmetric keys (a public document cannot hold a secret), encryption keys,
// unsupported curves and short RSA keys are dropped, and logged.
func (j *jwks) usableKeys(set []jwkset.JWK) []jwkset.JWK {
	var keys []jwkset.JWK
	for _, k := range set {
		m := k.Marshal()
		pub := k.Key()
		if p, ok := pub.(interface{ Public() crypto.PublicKey }); ok {
			pub = p.Public() // a set that holds a private key by mistake
		}
		alg, err := jwkAlg(pub, m.ALG.String())
		if err == nil && m.USE != "" && m.USE != jwkset.UseSig {
			err = fmt.Errorf("its use is %q", m.USE)
		}
		if err == nil {
			k, err = jwkset.NewJWKFromKey(pub, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{ALG: jwkset.ALG(alg), KID: m.KID, USE: m.USE}})
		}
		if err != nil {
			j.log.Debug("JWKS key not used", "kid", m.KID, "kty", m.KTY, "why", err)
			continue
		}
		keys = append(keys, k)
	}
	return keys
}

// jwksMetrics returns the JWKS metrics, registered on reg when it is not nil. A registry
// that has them already (another Verifier of the node) shares its series.
func jwksMetrics(reg prometheus.Registerer) (prometheus.Counter, prometheus.Gauge, error) {
	failures := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "switchboard_jwks_refresh_failures_total",
		Help: "JWKS fetches that failed (unreachable, bad status, bad JSON); the last good keys stay in use.",
	})
	keyCount := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "switchboard_jwks_keys",
		Help: "Usable signing keys in the last JWKS fetched.",
	})
	if reg == nil {
		return failures, keyCount, nil
	}
	var err error
	if failures, err = registered(reg, failures); err != nil {
		return nil, nil, err
	}
	if keyCount, err = registered(reg, keyCount); err != nil {
		return nil, nil, err
	}
	return failures, keyCount, nil
}

func registered[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	var dup prometheus.AlreadyRegisteredError
	if errors.As(err, &dup) {
		if existing, ok := dup.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	if err != nil {
		return c, fmt.Errorf("tokens: registering metrics: %w", err)
	}
	return c, nil
}
