// Package api is the CRM's JSON API under /api, for staff tools and ops:
// leads with their calls and timelines, and the delivery inbox. Every route
// needs the bearer token; a wrong or missing token is 401 and says which.
package api

import (
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/httperr"
	"github.com/ctmflow/ctmflow/store"
)

// Options configure the API.
type Options struct {
	Store *store.Store
	// Token is the bearer token every request must present.
	Token string
	// PhoneRegion reads ?phone= values written without a country code.
	PhoneRegion string
	Logger      *slog.Logger
	// CTM fetches recordings with each account's API keys; nil answers
	// recording requests with 503.
	CTM *ctm.Client
}

// API serves /api.
type API struct {
	opts Options
}

// New returns the API.
func New(opts Options) *API {
	if opts.PhoneRegion == "" {
		opts.PhoneRegion = ctm.DefaultRegion
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &API{opts: opts}
}

// Group returns the authenticated /api route group, for other packages
// (triggers, inbox ops) to mount their routes on.
func (a *API) Group(r gin.IRouter) *gin.RouterGroup {
	return r.Group("/api", a.authenticate)
}

// Register mounts the lead routes on the /api group g.
func (a *API) Register(g *gin.RouterGroup) {
	g.GET("/leads", a.listLeads)
	g.GET("/leads/:id", a.getLead)
	g.PATCH("/leads/:id", a.editLead)
	g.GET("/calls/:id/recording", a.recording)
}

func (a *API) authenticate(c *gin.Context) {
	header := c.GetHeader("Authorization")
	token, ok := strings.CutPrefix(header, "Bearer ")
	if header == "" {
		httperr.Abort(c, httperr.New(http.StatusUnauthorized, "token_missing",
			"an Authorization: Bearer token is required"))
		return
	}
	if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(token)), []byte(a.opts.Token)) != 1 {
		httperr.Abort(c, httperr.New(http.StatusUnauthorized, "token_invalid",
			"the bearer token is not valid"))
		return
	}
	c.Next()
}

func (a *API) listLeads(c *gin.Context) {
	f := store.LeadFilter{}
	if p := c.Query("phone"); p != "" {
		phone, err := ctm.NormalizePhone(p, a.opts.PhoneRegion)
		if err != nil {
			httperr.Abort(c, invalidField("phone", "must be a phone number, e.g. +12395550171"))
			return
		}
		f.Phone = phone
	}
	var err error
	if f.AccountID, err = int64Query(c, "account_id", 0); err != nil {
		httperr.Abort(c, err)
		return
	}
	if f.AfterID, f.Limit, err = pageQuery(c); err != nil {
		httperr.Abort(c, err)
		return
	}

	leads, err := a.opts.Store.ListLeads(c.Request.Context(), f)
	if err != nil {
		httperr.Abort(c, httperr.Wrap(http.StatusInternalServerError, "storage_error",
			"leads could not be loaded", err))
		return
	}
	out := LeadList{Leads: make([]Lead, 0, len(leads))}
	for i := range leads {
		out.Leads = append(out.Leads, NewLead(&leads[i]))
	}
	if len(leads) == f.Limit {
		out.Next = leads[len(leads)-1].ID
	}
	c.JSON(http.StatusOK, out)
}

func (a *API) getLead(c *gin.Context) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		httperr.Abort(c, invalidField("id", "must be a positive integer"))
		return
	}
	lead, err := a.opts.Store.GetLead(c.Request.Context(), id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		httperr.Abort(c, httperr.New(http.StatusNotFound, "lead_not_found", "no lead with that id"))
	case err != nil:
		httperr.Abort(c, httperr.Wrap(http.StatusInternalServerError, "storage_error",
			"lead could not be loaded", err))
	default:
		c.JSON(http.StatusOK, NewLead(lead))
	}
}

// pageQuery reads a list's paging: ?after= (the last id seen, default 0)
// and ?limit= (1–200, default 50).
func pageQuery(c *gin.Context) (afterID int64, limit int, err error) {
	if afterID, err = int64Query(c, "after", 0); err != nil {
		return 0, 0, err
	}
	n, err := int64Query(c, "limit", 50)
	if err == nil && (n < 1 || n > 200) {
		err = invalidField("limit", "must be between 1 and 200")
	}
	return afterID, int(n), err
}

func int64Query(c *gin.Context, name string, def int64) (int64, error) {
	v := c.Query(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, invalidField(name, "must be a non-negative integer")
	}
	return n, nil
}

func invalidField(field, why string) *httperr.Error {
	return &httperr.Error{
		Status:  http.StatusBadRequest,
		Code:    "invalid_parameter",
		Message: field + " " + why,
		Fields:  map[string]string{field: why},
	}
}
