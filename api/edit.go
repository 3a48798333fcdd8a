package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/mail"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/httperr"
	"github.com/ctmflow/ctmflow/models"
	"github.com/ctmflow/ctmflow/store"
)

// editableLimits are the fields PATCH /api/leads/{id} accepts, with the
// most characters each may hold (the column sizes).
var editableLimits = map[string]int{
	"name": 200, "email": 320, "city": 100, "state": 100, "country": 100,
	"postal_code": 20, "source": 200, "medium": 200, "campaign": 200,
	"phone": 32,
}

// maxEditBody caps an edit's body; nine short strings fit many times.
const maxEditBody = 64 << 10

// editLead applies a staff edit: a JSON object of the fields to set, each
// a string ("" clears it). Every field named becomes the staff's, which
// CTM never changes again. Answers the lead as GET does.
func (a *API) editLead(c *gin.Context) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		httperr.Abort(c, invalidField("id", "must be a positive integer"))
		return
	}
	edit, err := a.readEdit(c)
	if err != nil {
		httperr.Abort(c, err)
		return
	}

	lead, err := a.opts.Store.EditLead(c.Request.Context(), id, edit)
	switch {
	case errors.Is(err, store.ErrNotFound):
		httperr.Abort(c, httperr.New(http.StatusNotFound, "lead_not_found", "no lead with that id"))
	case errors.Is(err, store.ErrConflict):
		httperr.Abort(c, &httperr.Error{
			Status:  http.StatusConflict,
			Code:    "phone_taken",
			Message: "another lead of this account has that phone number",
			Fields:  map[string]string{"phone": "belongs to another lead of the account"},
		})
	case err != nil:
		httperr.Abort(c, httperr.Wrap(http.StatusInternalServerError, "storage_error",
			"lead could not be saved", err))
	default:
		c.JSON(http.StatusOK, NewLead(lead))
	}
}

// readEdit reads and validates an edit's body, naming every bad field.
func (a *API) readEdit(c *gin.Context) (store.LeadEdit, error) {
	if ct := c.GetHeader("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return nil, httperr.New(http.StatusUnsupportedMediaType, "unsupported_media_type",
				"content type must be application/json")
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, maxEditBody))
	if err != nil {
		return nil, httperr.New(http.StatusRequestEntityTooLarge, "body_too_large",
			fmt.Sprintf("body exceeds %d bytes", maxEditBody))
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil || raw == nil {
		return nil, httperr.New(http.StatusBadRequest, "invalid_json", "body must be a JSON object of lead fields")
	}
	if len(raw) == 0 {
		return nil, httperr.New(http.StatusUnprocessableEntity, "no_fields",
			"body names no field; editable: "+strings.Join(editableFields(), ", "))
	}

	edit := store.LeadEdit{}
	bad := map[string]string{}
	for field, value := range raw {
		v, why := a.editValue(field, value)
		if why != "" {
			bad[field] = why
			continue
		}
		edit[field] = v
	}
	if len(bad) > 0 {
		return nil, invalidFields(bad)
	}
	return edit, nil
}

// editValue checks one field's value and returns it cleaned, or why not.
func (a *API) editValue(field string, raw json.RawMessage) (string, string) {
	limit, ok := editableLimits[field]
	if !ok {
		return "", "is not an editable field"
	}
	var v string
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) || json.Unmarshal(raw, &v) != nil {
		return "", "must be a string"
	}
	v = strings.TrimSpace(v)
	switch {
	case utf8.RuneCountInString(v) > limit:
		return "", fmt.Sprintf("must be at most %d characters", limit)
	case strings.ContainsFunc(v, unicode.IsControl):
		return "", "must not contain control characters"
	}

	switch field {
	case "phone":
		if v == "" {
			return "", "cannot be cleared: it is the lead's key"
		}
		phone, err := ctm.NormalizePhone(v, a.opts.PhoneRegion)
		if err != nil || phone == "" {
			return "", "must be a phone number, e.g. +12395550171"
		}
		return phone, ""
	case "email":
		if v == "" {
			return "", ""
		}
		addr, err := mail.ParseAddress(v)
		if err != nil || addr.Address != v {
			return "", "must be an email address, e.g. name@example.org"
		}
	}
	return v, ""
}

func editableFields() []string {
	out := append([]string{"phone"}, models.LeadFields...)
	sort.Strings(out)
	return out
}

// invalidFields is a 422 naming each bad field and why.
func invalidFields(bad map[string]string) *httperr.Error {
	names := make([]string, 0, len(bad))
	for f := range bad {
		names = append(names, f)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, f := range names {
		parts[i] = f + " " + bad[f]
	}
	return &httperr.Error{
		Status:  http.StatusUnprocessableEntity,
		Code:    "invalid_fields",
		Message: strings.Join(parts, "; "),
		Fields:  bad,
	}
}
