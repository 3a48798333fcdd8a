package faults

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"

	"github.com/ctmflow/ctmflow/ctm"
	"github.com/ctmflow/ctmflow/teststack"
)

// answer is a webhook's or the API's reply: status and delivery id.
type answer struct {
	status     int
	deliveryID int64
	err        error
}

// postAt posts body to a stack's webhook path signed with X-CTM-Time
// ctmTime (epoch seconds), as CTM stamps it. It is safe from any
// goroutine.
func postAt(s *teststack.Stack, path string, body []byte, ctmTime int64) answer {
	ts := strconv.FormatInt(ctmTime, 10)
	req, err := http.NewRequest(http.MethodPost, s.BaseURL+"/webhooks/ctm/"+path, bytes.NewReader(body))
	if err != nil {
		return answer{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(ctm.HeaderTime, ts)
	req.Header.Set(ctm.HeaderSignature, ctm.Sign(s.Secret, ts, body))
	return do(req)
}

// replay asks a stack's API to hand a delivery to its workflow again.
func replay(t *testing.T, s *teststack.Stack, id int64) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost,
		fmt.Sprintf("%s/api/inbox/deliveries/%d/replay", s.BaseURL, id), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.Token)
	if a := do(req); a.err != nil || a.status != http.StatusAccepted {
		t.Fatalf("replaying delivery %d: %d %v", id, a.status, a.err)
	}
}

func do(req *http.Request) answer {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var body struct {
		DeliveryID int64 `json:"delivery_id"`
	}
	_ = json.Unmarshal(b, &body)
	return answer{status: resp.StatusCode, deliveryID: body.DeliveryID}
}
