package triggers

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/ctmflow/ctmflow/egress"
	"github.com/ctmflow/ctmflow/models"
)

// Limits on what a rule may hold.
const (
	maxNameLen    = 200
	maxURLLen     = 2000
	maxListItems  = 50
	maxItemLen    = 200
	maxRateLimit  = 1000
	minStarRating = 1
	maxStarRating = 5
)

// Validate checks a rule before it is saved and returns, for each bad
// field, why; nil means the rule is good. Field names are those of the
// API's JSON ("destination.url"). g judges a destination written as an
// IP address now, rather than at its first delivery.
func Validate(r *models.TriggerRule, g *egress.Guard) map[string]string {
	bad := map[string]string{}

	switch {
	case strings.TrimSpace(r.Name) == "":
		bad["name"] = "is required"
	case len(r.Name) > maxNameLen:
		bad["name"] = fmt.Sprintf("must be at most %d characters", maxNameLen)
	}

	switch {
	case r.Event == "":
		bad["event"] = "is required: one of " + strings.Join(Events, ", ")
	case !slices.Contains(Events, r.Event):
		bad["event"] = "must be one of " + strings.Join(Events, ", ")
	}

	c := r.Conditions
	if c.MinStarRating != nil && (*c.MinStarRating < minStarRating || *c.MinStarRating > maxStarRating) {
		bad["conditions.min_star_rating"] = "must be between 1 and 5 stars"
	}
	if c.Direction != "" && !slices.Contains(Directions, c.Direction) {
		bad["conditions.direction"] = "must be one of " + strings.Join(Directions, ", ")
	}
	if why := checkList(c.Sources); why != "" {
		bad["conditions.sources"] = why
	}
	if why := checkList(c.Tags); why != "" {
		bad["conditions.tags"] = why
	}

	if why := checkURL(r.URL, g); why != "" {
		bad["destination.url"] = why
	}
	if _, err := DecodeSecret(r.Secret); err != nil {
		bad["destination.secret"] = err.Error()
	}
	if r.RateLimit < 0 || r.RateLimit > maxRateLimit {
		bad["destination.rate_limit_per_second"] = fmt.Sprintf(
			"must be between 0 (no limit) and %d requests per second", maxRateLimit)
	}

	if len(bad) == 0 {
		return nil
	}
	return bad
}

func checkList(items []string) string {
	if len(items) > maxListItems {
		return fmt.Sprintf("must list at most %d values", maxListItems)
	}
	for _, it := range items {
		if strings.TrimSpace(it) == "" {
			return "must not contain empty values"
		}
		if len(it) > maxItemLen {
			return fmt.Sprintf("values must be at most %d characters", maxItemLen)
		}
	}
	return ""
}

func checkURL(raw string, g *egress.Guard) string {
	if raw == "" {
		return "is required"
	}
	if len(raw) > maxURLLen {
		return fmt.Sprintf("must be at most %d characters", maxURLLen)
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "is not a valid URL"
	case u.Scheme != "http" && u.Scheme != "https":
		return "must be an http:// or https:// URL"
	case u.Host == "" || u.Hostname() == "":
		return "must name a host"
	case u.User != nil:
		// Credentials in a URL end up in proxies' and servers' logs; the
		// signature is how a receiver knows the sender.
		return "must not carry a user name or password"
	case u.Fragment != "":
		return "must not have a #fragment"
	}
	if err := g.CheckHost(u.Hostname()); err != nil {
		if errors.Is(err, egress.ErrRefused) {
			return "points at a private or reserved address; list its network in OUTBOUND_ALLOWLIST to allow it"
		}
		return err.Error()
	}
	return ""
}

// Destination is the key a rate limit is kept under: requests to one URL
// share its limit whichever rule sends them.
func Destination(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return rawURL
	}
	key := strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host) + u.EscapedPath()
	if len(key) > 300 {
		key = key[:300]
	}
	return key
}
