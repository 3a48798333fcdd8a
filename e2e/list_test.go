package e2e

import (
	"fmt"

	"go.temporal.io/api/workflowservice/v1"

	"github.com/ctmflow/ctmflow/teststack"
)

func listRequest(s *teststack.Stack, wfID string) *workflowservice.ListWorkflowExecutionsRequest {
	return &workflowservice.ListWorkflowExecutionsRequest{
		Namespace: s.Config.TemporalNamespace,
		Query:     fmt.Sprintf("WorkflowId = '%s'", wfID),
	}
}
