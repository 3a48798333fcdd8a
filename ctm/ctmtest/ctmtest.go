// Package ctmtest is a local stand-in for CTM's REST API and for the
// storage its recording links redirect to, for tests. It serves the
// paths ctmflow calls on 127.0.0.1, checks each account's HTTP Basic
// auth, and lets a test script failures. Tests never reach the real
// service.
package ctmtest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ctmflow/ctmflow/ctm"
)

// Server is the stand-in. API is CTM's API; Storage is where recording
// links redirect.
type Server struct {
	API     *httptest.Server
	Storage *httptest.Server

	mu       sync.Mutex
	accounts map[int64]ctm.Credentials
	calls    map[int64]map[int64][]byte
	// sequences script successive answers of one call's GET: each
	// request takes the next body, and the last repeats.
	sequences map[[2]int64][][]byte
	sales     map[[2]int64][]byte
	audio     map[string][]byte
	failures  []*failure
	requests  []string
	// storageAuth counts storage requests that carried credentials.
	storageAuth int
}

type failure struct {
	pathContains string
	status       int
	retryAfter   string
	times        int
}

// New starts a stand-in, stopped when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		accounts:  map[int64]ctm.Credentials{},
		calls:     map[int64]map[int64][]byte{},
		sequences: map[[2]int64][][]byte{},
		sales:     map[[2]int64][]byte{},
		audio:     map[string][]byte{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/accounts/{account}/calls.json", s.listCalls)
	mux.HandleFunc("GET /api/v1/accounts/{account}/calls/{rest...}", s.call)
	s.API = httptest.NewServer(s.guard(mux))
	s.Storage = httptest.NewServer(http.HandlerFunc(s.media))
	t.Cleanup(s.API.Close)
	t.Cleanup(s.Storage.Close)
	return s
}

// URL is the API's base URL, for CTM_API_URL.
func (s *Server) URL() string { return s.API.URL }

// AddAccount creates an account with fresh API keys and returns them.
func (s *Server) AddAccount(id int64) ctm.Credentials {
	s.mu.Lock()
	defer s.mu.Unlock()
	creds := ctm.Credentials{AccessKey: "ak_" + randomHex(6), SecretKey: "sk_" + randomHex(12)}
	s.accounts[id] = creds
	s.calls[id] = map[int64][]byte{}
	return creds
}

// Keys renders every account's keys as CTM_API_KEYS.
func (s *Server) Keys() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var parts []string
	for id, c := range s.accounts {
		parts = append(parts, fmt.Sprintf("%d=%s:%s", id, c.AccessKey, c.SecretKey))
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// PutCall stores (or replaces) a call object in its account. The object
// must carry id and account_id.
func (s *Server) PutCall(body []byte) {
	c, err := ctm.Parse(body)
	if err != nil {
		panic(fmt.Sprintf("ctmtest: call body: %v", err))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[c.AccountID][c.ID] = body
	delete(s.sequences, [2]int64{c.AccountID, c.ID})
}

// PutCallSequence makes GET of one call answer each body in turn (the
// last one repeats); the call list shows the last.
func (s *Server) PutCallSequence(bodies ...[]byte) {
	s.PutCall(bodies[len(bodies)-1])
	c, _ := ctm.Parse(bodies[0])
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sequences[[2]int64{c.AccountID, c.ID}] = bodies
}

// PutSale stores a call's sale object.
func (s *Server) PutSale(account, callID int64, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sales[[2]int64{account, callID}] = body
}

// PutRecording stores a call's audio and returns the call's recording URL
// on the stand-in API, as CTM's webhooks carry it.
func (s *Server) PutRecording(account, callID int64, audio []byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.audio[fmt.Sprintf("%d/%d", account, callID)] = audio
	return fmt.Sprintf("%s/api/v1/accounts/%d/calls/%d/recording", s.API.URL, account, callID)
}

// Fail makes the next times requests whose path contains pathContains
// answer status, with a Retry-After header when retryAfter is set.
func (s *Server) Fail(pathContains string, status, times int, retryAfter string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures = append(s.failures, &failure{pathContains, status, retryAfter, times})
}

// Requests counts the API requests whose path contains pathContains.
func (s *Server) Requests(pathContains string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, p := range s.requests {
		if strings.Contains(p, pathContains) {
			n++
		}
	}
	return n
}

// StorageSawCredentials counts storage requests that carried an
// Authorization header: it must stay 0.
func (s *Server) StorageSawCredentials() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.storageAuth
}

// guard records the request, serves a scripted failure, and checks the
// Basic auth of the account in the path.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests = append(s.requests, r.URL.Path)
		for _, f := range s.failures {
			if f.times > 0 && strings.Contains(r.URL.Path, f.pathContains) {
				f.times--
				s.mu.Unlock()
				if f.retryAfter != "" {
					w.Header().Set("Retry-After", f.retryAfter)
				}
				writeJSON(w, f.status, map[string]any{"error": http.StatusText(f.status)})
				return
			}
		}
		s.mu.Unlock()

		// The mux has not routed yet: read the account from the path.
		account := accountInPath(r.URL.Path)
		user, pass, ok := r.BasicAuth()
		s.mu.Lock()
		want, known := s.accounts[account]
		s.mu.Unlock()
		if !ok || !known || user != want.AccessKey || pass != want.SecretKey {
			writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "invalid credentials"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func accountInPath(p string) int64 {
	parts := strings.Split(strings.Trim(p, "/"), "/")
	for i := 0; i+1 < len(parts); i++ {
		if parts[i] == "accounts" {
			id, _ := strconv.ParseInt(parts[i+1], 10, 64)
			return id
		}
	}
	return 0
}

func (s *Server) call(w http.ResponseWriter, r *http.Request) {
	account, _ := strconv.ParseInt(r.PathValue("account"), 10, 64)
	rest := r.PathValue("rest")
	idText, sub, _ := strings.Cut(strings.TrimSuffix(rest, ".json"), "/")
	id, err := strconv.ParseInt(idText, 10, 64)
	if err != nil {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "not found"})
		return
	}
	key := [2]int64{account, id}

	s.mu.Lock()
	body, found := s.calls[account][id]
	if seq := s.sequences[key]; len(seq) > 0 {
		body = seq[0]
		if len(seq) > 1 {
			s.sequences[key] = seq[1:]
		}
	}
	sale, hasSale := s.sales[key]
	_, hasAudio := s.audio[fmt.Sprintf("%d/%d", account, id)]
	s.mu.Unlock()

	switch {
	case sub == "" && found:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	case sub == "sale" && hasSale:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(sale)
	case sub == "recording" && hasAudio:
		token := randomHex(8)
		s.mu.Lock()
		s.audio["token/"+token] = s.audio[fmt.Sprintf("%d/%d", account, id)]
		s.mu.Unlock()
		// Like CTM: a redirect to a short-lived, signed storage link.
		http.Redirect(w, r, fmt.Sprintf("%s/media/%s.mp3?expires=%d&signature=%s",
			s.Storage.URL, token, time.Now().Add(time.Minute).Unix(), randomHex(16)), http.StatusFound)
	default:
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "not found"})
	}
}

func (s *Server) listCalls(w http.ResponseWriter, r *http.Request) {
	account, _ := strconv.ParseInt(r.PathValue("account"), 10, 64)
	q := r.URL.Query()
	from, err1 := time.Parse(time.DateOnly, q.Get("start_date"))
	to, err2 := time.Parse(time.DateOnly, q.Get("end_date"))
	page, err3 := strconv.Atoi(q.Get("page"))
	perPage, err4 := strconv.Atoi(q.Get("per_page"))
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil || page < 1 || perPage < 1 || perPage > ctm.MaxPerPage {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "bad query"})
		return
	}

	s.mu.Lock()
	type item struct {
		id   int64
		body []byte
	}
	var items []item
	for id, body := range s.calls[account] {
		c, _ := ctm.Parse(body)
		day := c.StartedAt().Truncate(24 * time.Hour)
		if !day.Before(from) && !day.After(to) {
			items = append(items, item{id, body})
		}
	}
	s.mu.Unlock()
	// Newest first, as CTM lists them.
	slices.SortFunc(items, func(a, b item) int { return int(b.id - a.id) })

	total := len(items)
	pages := (total + perPage - 1) / perPage
	lo := min((page-1)*perPage, total)
	hi := min(lo+perPage, total)
	calls := make([]json.RawMessage, 0, hi-lo)
	for _, it := range items[lo:hi] {
		calls = append(calls, it.body)
	}
	var next any
	if page < pages {
		u := *r.URL
		v := u.Query()
		v.Set("page", strconv.Itoa(page+1))
		u.RawQuery = v.Encode()
		next = s.API.URL + u.RequestURI()
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"calls": calls, "page": page, "per_page": perPage,
		"total_entries": total, "total_pages": pages, "next_page": next,
	})
}

// media is the storage: it serves audio with Range support, and never
// needs (so counts) credentials.
func (s *Server) media(w http.ResponseWriter, r *http.Request) {
	token := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/media/"), ".mp3")
	s.mu.Lock()
	if r.Header.Get("Authorization") != "" {
		s.storageAuth++
	}
	audio, ok := s.audio["token/"+token]
	s.mu.Unlock()
	if !ok || r.URL.Query().Get("signature") == "" {
		http.Error(w, "AccessDenied", http.StatusForbidden)
		return
	}
	w.Header().Set("Content-Type", "audio/mpeg")
	w.Header().Set("ETag", `"`+token+`"`)
	http.ServeContent(w, r, "recording.mp3", time.Unix(1_790_000_000, 0), bytes.NewReader(audio))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
