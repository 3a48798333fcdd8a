package server

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ctmflow/ctmflow/httperr"
	"github.com/ctmflow/ctmflow/logging"
)

// A handler that gets it wrong — logs the caller's number, fails with it
// in the cause, panics with it — must still not put the number in the
// process's log output.
func TestHandlersCannotLogAPhoneNumber(t *testing.T) {
	var buf bytes.Buffer
	log, err := logging.New(&buf, "json", "debug")
	require.NoError(t, err)

	r := NewRouter(Options{
		Logger: log,
		Mount: func(r *gin.Engine) {
			r.GET("/logs", func(c *gin.Context) {
				log.Info("looking up caller", "phone", c.Query("phone"))
				c.Status(http.StatusNoContent)
			})
			r.GET("/fails", func(c *gin.Context) {
				cause := errors.New(`pq: duplicate key value (caller_number)=(` + c.Query("phone") + `)`)
				httperr.Abort(c, httperr.Wrap(http.StatusInternalServerError, "internal", "internal error", cause))
			})
			r.GET("/panics", func(c *gin.Context) {
				panic("no lead for " + c.Query("phone"))
			})
		},
	})

	for _, phone := range []string{"+12395550171", "(239) 555-0171", "2395550171", "239.555.0171"} {
		for _, path := range []string{"/logs", "/fails", "/panics"} {
			req := httptest.NewRequest(http.MethodGet, path+"?phone="+urlEscape(phone), nil)
			req.Header.Set("X-Request-ID", "12395550171")
			rec := httptest.NewRecorder()
			r.ServeHTTP(rec, req)
			assert.NotContains(t, rec.Body.String(), "5550171", "%s answers with the number", path)
		}
	}

	out := buf.String()
	require.Contains(t, out, "looking up caller")
	require.Contains(t, out, "handler panicked")
	require.Contains(t, out, "duplicate key value")
	digits := strings.NewReplacer(" ", "", "-", "", ".", "", "(", "", ")", "").Replace(out)
	assert.NotContains(t, digits, "5550171", out)
}

func urlEscape(s string) string {
	return strings.NewReplacer("+", "%2B", " ", "%20", "(", "%28", ")", "%29").Replace(s)
}
