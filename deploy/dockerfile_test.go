package deploy

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// dockerfile is what the tests need to know of the Dockerfile.
type dockerfile struct {
	stages []string // FROM lines, in order
	// build is the `go build` command of the RUN that builds the binary,
	// with the environment it sets.
	build      []string
	buildEnv   []string
	copyFrom   [2]string // COPY --from=build SRC DST of the final stage
	user       string    // USER of the final stage
	entrypoint string
	exposed    []string
}

// instructions joins continued lines and drops comments.
func instructions(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("../Dockerfile")
	require.NoError(t, err)
	defer f.Close()
	var out []string
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || line == "" && cur.Len() == 0 {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		out = append(out, cur.String())
		cur.Reset()
	}
	require.NoError(t, sc.Err())
	return out
}

func loadDockerfile(t *testing.T) dockerfile {
	t.Helper()
	var d dockerfile
	for _, ins := range instructions(t) {
		op, rest, _ := strings.Cut(ins, " ")
		switch strings.ToUpper(op) {
		case "FROM":
			d.stages = append(d.stages, rest)
		case "RUN":
			fields := shellFields(rest)
			for i, f := range fields {
				if f == "go" && i+1 < len(fields) && fields[i+1] == "build" {
					d.build = fields[i:]
					for _, e := range fields[:i] {
						if !strings.HasPrefix(e, "--mount") && strings.Contains(e, "=") {
							d.buildEnv = append(d.buildEnv, e)
						}
					}
				}
			}
		case "COPY":
			fields := strings.Fields(rest)
			if len(fields) == 3 && strings.HasPrefix(fields[0], "--from=") {
				d.copyFrom = [2]string{fields[1], fields[2]}
			}
		case "USER":
			d.user = rest
		case "EXPOSE":
			d.exposed = append(d.exposed, strings.Fields(rest)...)
		case "ENTRYPOINT":
			var ep []string
			require.NoError(t, json.Unmarshal([]byte(rest), &ep), "ENTRYPOINT must be exec form")
			require.Len(t, ep, 1)
			d.entrypoint = ep[0]
		}
	}
	return d
}

func TestDockerfile(t *testing.T) {
	d := loadDockerfile(t)

	t.Run("multi-stage, on go.mod's Go", func(t *testing.T) {
		require.GreaterOrEqual(t, len(d.stages), 2)
		b, err := os.ReadFile("../go.mod")
		require.NoError(t, err)
		m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(b)
		require.NotNil(t, m, "go.mod has no go directive")
		assert.Regexp(t, `^golang:`+regexp.QuoteMeta(string(m[1]))+`(-\S+)? AS build$`, d.stages[0])
	})
	t.Run("builds the production binary, static", func(t *testing.T) {
		require.NotEmpty(t, d.build, "no RUN go build")
		assert.Contains(t, d.buildEnv, "CGO_ENABLED=0")
		assert.Equal(t, "nodev", flagValue(d.build, "-tags"))
		assert.Equal(t, "./cmd/ctmflow", d.build[len(d.build)-1])
		assert.Equal(t, flagValue(d.build, "-o"), d.copyFrom[0], "the final stage copies what was built")
		assert.Equal(t, d.entrypoint, d.copyFrom[1])
	})
	t.Run("small and non-root", func(t *testing.T) {
		final := d.stages[len(d.stages)-1]
		assert.Regexp(t, `^gcr\.io/distroless/static`, final)
		assert.NotEmpty(t, d.user)
		user, _, _ := strings.Cut(d.user, ":")
		assert.NotContains(t, []string{"root", "0"}, user)
	})
}

// shellFields splits a RUN line into words as sh does for the simple
// quoting the Dockerfile uses: whitespace separates, double quotes group.
func shellFields(s string) []string {
	var out []string
	var cur strings.Builder
	inWord, quoted := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
			inWord = true
		case !quoted && (r == ' ' || r == '\t'):
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out
}

func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// TestProductionBinary runs the Dockerfile's build command here and runs
// what it builds, as the containers will.
func TestProductionBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the production binary; skipped with -short")
	}
	d := loadDockerfile(t)
	require.NotEmpty(t, d.build)

	bin := filepath.Join(t.TempDir(), "ctmflow")
	args := append([]string{}, d.build[1:]...)
	for i, a := range args {
		if a == "-o" {
			args[i+1] = bin
		}
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), d.buildEnv...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s\n%s", strings.Join(cmd.Args, " "), out)

	t.Run("lists the production commands and not dev", func(t *testing.T) {
		out, err := exec.Command(bin, "--help").CombinedOutput()
		require.NoError(t, err, string(out))
		for _, sub := range []string{"webhook", "worker", "migrate", "config", "probe"} {
			assert.Regexp(t, `(?m)^\s+`+sub+`\s`, string(out))
		}
		assert.NotRegexp(t, `(?m)^\s+dev\s`, string(out))
	})
	t.Run("reads the compose environment", func(t *testing.T) {
		c := loadCompose(t)
		s := c.Services["worker"]
		cmd := exec.Command(bin, "config", "--role", "worker")
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		for k, v := range environment(t, s, operatorEnv) {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
		assert.Regexp(t, `(?m)^METRICS_ADDR\s+:9090\s+env`, string(out))
		assert.NotContains(t, string(out), operatorEnv["POSTGRES_PASSWORD"], "the database password is masked")
	})
}
