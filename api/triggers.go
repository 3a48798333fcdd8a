package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/ctmflow/ctmflow/egress"
	"github.com/ctmflow/ctmflow/httperr"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/store"
	"github.com/ctmflow/ctmflow/triggers"
)

// Resender starts a finished trigger delivery again.
type Resender interface {
	Resend(ctx context.Context, id int64) (*models.TriggerDelivery, error)
}

// TriggerOptions configure the trigger routes.
type TriggerOptions struct {
	Resender Resender
	// Guard refuses rules whose destination is a private IP address.
	Guard *egress.Guard
	// RotationOverlap is how long a rotated-out secret keeps signing.
	RotationOverlap time.Duration
}

// maxRuleBody caps a rule's JSON; a rule is a few hundred bytes.
const maxRuleBody = 64 << 10

// RegisterTriggers mounts the trigger rule and delivery log routes on the
// /api group g.
func (a *API) RegisterTriggers(g *gin.RouterGroup, opts TriggerOptions) {
	if opts.Guard == nil {
		opts.Guard = egress.NewGuard(nil)
	}
	t := &triggerRoutes{api: a, opts: opts}
	g.GET("/triggers", t.list)
	g.POST("/triggers", t.create)
	g.GET("/triggers/:id", t.get)
	g.PATCH("/triggers/:id", t.update)
	g.DELETE("/triggers/:id", t.delete)

	g.GET("/deliveries", t.listDeliveries)
	g.GET("/deliveries/:id", t.getDelivery)
	g.POST("/deliveries/:id/resend", t.resend)
}

type triggerRoutes struct {
	api  *API
	opts TriggerOptions
}

// Rule is a trigger rule as the API shows it. Its secret is shown once:
// in the answer that created or rotated it.
type Rule struct {
	ID             int64                    `json:"id"`
	Name           string                   `json:"name"`
	Event          string                   `json:"event"`
	Enabled        bool                     `json:"enabled"`
	DisabledReason string                   `json:"disabled_reason,omitempty"`
	Conditions     models.TriggerConditions `json:"conditions"`
	Destination    RuleDestination          `json:"destination"`
	CreatedAt      time.Time                `json:"created_at"`
	UpdatedAt      time.Time                `json:"updated_at"`
}

// RuleDestination is where a rule sends.
type RuleDestination struct {
	URL                string  `json:"url"`
	Secret             string  `json:"secret,omitempty"`
	RateLimitPerSecond float64 `json:"rate_limit_per_second"`
	// PreviousSecretUntil is when the secret rotated out stops signing.
	PreviousSecretUntil *time.Time `json:"previous_secret_until,omitempty"`
}

// NewRule renders a rule without its secret.
func NewRule(r *models.TriggerRule) Rule {
	out := Rule{
		ID:             r.ID,
		Name:           r.Name,
		Event:          r.Event,
		Enabled:        r.Enabled(),
		DisabledReason: r.DisabledReason,
		Conditions:     r.Conditions,
		Destination: RuleDestination{
			URL:                r.URL,
			RateLimitPerSecond: r.RateLimit,
		},
		CreatedAt: r.CreatedAt.UTC(),
		UpdatedAt: r.UpdatedAt.UTC(),
	}
	if r.PreviousSecret != "" && r.PreviousSecretUntil != nil && time.Now().Before(*r.PreviousSecretUntil) {
		out.Destination.PreviousSecretUntil = utc(r.PreviousSecretUntil)
	}
	return out
}

// ruleInput is the body of POST and PATCH. Pointers tell a field left
// out (PATCH keeps it) from one set to its zero value.
type ruleInput struct {
	Name        *string                   `json:"name"`
	Event       *string                   `json:"event"`
	Conditions  *models.TriggerConditions `json:"conditions"`
	Destination *destinationInput         `json:"destination"`
	Enabled     *bool                     `json:"enabled"`
}

type destinationInput struct {
	URL                *string  `json:"url"`
	Secret             *string  `json:"secret"`
	RateLimitPerSecond *float64 `json:"rate_limit_per_second"`
	// RotateSecret asks for a new generated secret (PATCH only).
	RotateSecret bool `json:"rotate_secret"`
}

func (t *triggerRoutes) list(c *gin.Context) {
	f := store.RuleFilter{Event: c.Query("event")}
	if f.Event != "" && !slices.Contains(triggers.Events, f.Event) {
		httperr.Abort(c, invalidField("event", "must be one of "+strings.Join(triggers.Events, ", ")))
		return
	}
	rules, err := t.api.opts.Store.ListRules(c.Request.Context(), f)
	if err != nil {
		httperr.Abort(c, storageError("trigger rules could not be loaded", err))
		return
	}
	out := make([]Rule, 0, len(rules))
	for i := range rules {
		out = append(out, NewRule(&rules[i]))
	}
	c.JSON(http.StatusOK, gin.H{"triggers": out})
}

func (t *triggerRoutes) get(c *gin.Context) {
	id, ok := pathID(c)
	if !ok {
		return
	}
	r, err := t.api.opts.Store.GetRule(c.Request.Context(), id)
	if err != nil {
		httperr.Abort(c, ruleError(err, "trigger rule could not be loaded"))
		return
	}
	c.JSON(http.StatusOK, NewRule(r))
}

func (t *triggerRoutes) create(c *gin.Context) {
	var in ruleInput
	if !decodeBody(c, &in) {
		return
	}
	r := &models.TriggerRule{}
	missing := map[string]string{}
	if in.Name == nil {
		missing["name"] = "is required"
	}
	if in.Event == nil {
		missing["event"] = "is required: one of " + strings.Join(triggers.Events, ", ")
	}
	if in.Destination == nil || in.Destination.URL == nil {
		missing["destination.url"] = "is required"
	}
	if in.Destination != nil && in.Destination.RotateSecret {
		missing["destination.rotate_secret"] = "applies to an existing rule; leave secret out to have one generated"
	}
	if len(missing) > 0 {
		httperr.Abort(c, invalidRule(missing))
		return
	}

	generated := in.Destination.Secret == nil
	if generated {
		r.Secret = triggers.NewSecret()
	}
	t.apply(r, &in, time.Now())
	if bad := triggers.Validate(r, t.opts.Guard); bad != nil {
		httperr.Abort(c, invalidRule(bad))
		return
	}
	if err := t.api.opts.Store.CreateRule(c.Request.Context(), r); err != nil {
		httperr.Abort(c, storageError("trigger rule could not be saved", err))
		return
	}
	out := NewRule(r)
	if generated {
		out.Destination.Secret = r.Secret
	}
	c.JSON(http.StatusCreated, out)
}

func (t *triggerRoutes) update(c *gin.Context) {
	id, ok := pathID(c)
	if !ok {
		return
	}
	var in ruleInput
	if !decodeBody(c, &in) {
		return
	}
	dest := in.Destination
	if dest != nil && dest.RotateSecret && dest.Secret != nil {
		httperr.Abort(c, invalidRule(map[string]string{
			"destination.rotate_secret": "give either a new secret or rotate_secret, not both",
		}))
		return
	}

	var generated string
	var bad map[string]string
	r, err := t.api.opts.Store.UpdateRule(c.Request.Context(), id, func(r *models.TriggerRule) error {
		if dest != nil && dest.RotateSecret {
			generated = triggers.NewSecret()
			s := generated
			dest.Secret = &s
		}
		t.apply(r, &in, time.Now())
		if bad = triggers.Validate(r, t.opts.Guard); bad != nil {
			return errInvalidRule
		}
		return nil
	})
	switch {
	case errors.Is(err, errInvalidRule):
		httperr.Abort(c, invalidRule(bad))
		return
	case err != nil:
		httperr.Abort(c, ruleError(err, "trigger rule could not be saved"))
		return
	}
	out := NewRule(r)
	out.Destination.Secret = generated
	c.JSON(http.StatusOK, out)
}

var errInvalidRule = errors.New("invalid rule")

// apply copies the fields the input sets onto r. A new secret rotates:
// the old one keeps signing for the overlap, so a receiver can switch
// without losing a request.
func (t *triggerRoutes) apply(r *models.TriggerRule, in *ruleInput, now time.Time) {
	if in.Name != nil {
		r.Name = strings.TrimSpace(*in.Name)
	}
	if in.Event != nil {
		r.Event = strings.TrimSpace(*in.Event)
	}
	if in.Conditions != nil {
		r.Conditions = *in.Conditions
	}
	if in.Enabled != nil {
		switch {
		case *in.Enabled:
			r.DisabledAt, r.DisabledReason = nil, ""
		case r.DisabledAt == nil:
			r.DisabledAt, r.DisabledReason = &now, "disabled by staff"
		}
	}
	d := in.Destination
	if d == nil {
		return
	}
	if d.URL != nil {
		r.URL = strings.TrimSpace(*d.URL)
	}
	if d.RateLimitPerSecond != nil {
		r.RateLimit = *d.RateLimitPerSecond
	}
	if d.Secret != nil && *d.Secret != r.Secret {
		if r.Secret != "" && t.opts.RotationOverlap > 0 {
			until := now.Add(t.opts.RotationOverlap)
			r.PreviousSecret, r.PreviousSecretUntil = r.Secret, &until
		}
		r.Secret = *d.Secret
	}
}

func (t *triggerRoutes) delete(c *gin.Context) {
	id, ok := pathID(c)
	if !ok {
		return
	}
	if err := t.api.opts.Store.DeleteRule(c.Request.Context(), id); err != nil {
		httperr.Abort(c, ruleError(err, "trigger rule could not be deleted"))
		return
	}
	c.Status(http.StatusNoContent)
}

// decodeBody reads a JSON body into v, refusing unknown fields and naming
// the field at fault.
func decodeBody(c *gin.Context, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(c.Writer, c.Request.Body, maxRuleBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		return true
	}

	var typeErr *json.UnmarshalTypeError
	var maxErr *http.MaxBytesError
	switch {
	case errors.As(err, &typeErr) && typeErr.Field != "":
		httperr.Abort(c, &httperr.Error{
			Status: http.StatusBadRequest, Code: "invalid_json",
			Message: typeErr.Field + " has the wrong type",
			Fields:  map[string]string{typeErr.Field: "must not be a JSON " + typeErr.Value},
		})
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		httperr.Abort(c, &httperr.Error{
			Status: http.StatusBadRequest, Code: "invalid_json",
			Message: field + " is not a known field",
			Fields:  map[string]string{field: "is not a known field"},
		})
	case errors.As(err, &maxErr):
		httperr.Abort(c, httperr.New(http.StatusRequestEntityTooLarge, "body_too_large",
			"the body must be at most "+strconv.Itoa(maxRuleBody)+" bytes"))
	case errors.Is(err, io.EOF):
		httperr.Abort(c, httperr.New(http.StatusBadRequest, "invalid_json", "the body must be a JSON object"))
	default:
		httperr.Abort(c, httperr.New(http.StatusBadRequest, "invalid_json", "the body is not valid JSON"))
	}
	return false
}

func invalidRule(fields map[string]string) *httperr.Error {
	names := make([]string, 0, len(fields))
	for f := range fields {
		names = append(names, f)
	}
	slices.Sort(names)
	return &httperr.Error{
		Status:  http.StatusUnprocessableEntity,
		Code:    "invalid_rule",
		Message: "the rule is not valid: " + strings.Join(names, ", "),
		Fields:  fields,
	}
}

func ruleError(err error, what string) *httperr.Error {
	if errors.Is(err, store.ErrNotFound) {
		return httperr.New(http.StatusNotFound, "trigger_not_found", "no trigger rule with that id")
	}
	return storageError(what, err)
}

func storageError(what string, err error) *httperr.Error {
	return httperr.Wrap(http.StatusInternalServerError, "storage_error", what, err)
}

// pathID reads the :id path parameter, aborting the request when it is
// not a positive integer.
func pathID(c *gin.Context) (int64, bool) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		httperr.Abort(c, invalidField("id", "must be a positive integer"))
		return 0, false
	}
	return id, true
}
