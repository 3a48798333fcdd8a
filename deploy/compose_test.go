package deploy

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	temporalconfig "go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	"gopkg.in/yaml.v3"

	"github.com/ctmflow/ctmflow/app"
	"github.com/ctmflow/ctmflow/cli"
	"github.com/ctmflow/ctmflow/config"
	"github.com/ctmflow/ctmflow/engine"
	"github.com/ctmflow/ctmflow/inbox"
	"github.com/ctmflow/ctmflow/metrics"
	"github.com/ctmflow/ctmflow/testenv"
)

// compose is the part of the Compose file format docker-compose.yml uses.
type compose struct {
	Services map[string]service `yaml:"services"`
	Volumes  map[string]any     `yaml:"volumes"`
}

type service struct {
	Image           string                `yaml:"image"`
	Build           string                `yaml:"build"`
	Command         []string              `yaml:"command"`
	Entrypoint      []string              `yaml:"entrypoint"`
	Environment     map[string]string     `yaml:"environment"`
	Ports           []string              `yaml:"ports"`
	Volumes         []string              `yaml:"volumes"`
	DependsOn       map[string]dependency `yaml:"depends_on"`
	Healthcheck     *healthcheck          `yaml:"healthcheck"`
	Restart         string                `yaml:"restart"`
	StopGracePeriod string                `yaml:"stop_grace_period"`
}

type dependency struct {
	Condition string `yaml:"condition"`
}

type healthcheck struct {
	Test []string `yaml:"test"`
}

// operatorEnv is what an operator exports before `docker compose up`.
var operatorEnv = map[string]string{
	"CTM_WEBHOOK_SECRETS": "123=production-secret",
	"API_TOKEN":           "production-token-0123456789",
	"POSTGRES_PASSWORD":   "pg-pass-0123",
}

// ctmflowRoles maps each ctmflow service to the process it runs.
var ctmflowRoles = map[string]config.Role{
	"migrate": config.RoleMigrate,
	"webhook": config.RoleWebhook,
	"worker":  config.RoleWorker,
}

func loadCompose(t *testing.T) compose {
	t.Helper()
	b, err := os.ReadFile("../docker-compose.yml")
	require.NoError(t, err)
	var c compose
	require.NoError(t, yaml.Unmarshal(b, &c))
	require.NotEmpty(t, c.Services)
	return c
}

var varRef = regexp.MustCompile(`\$\$|\$\{([A-Za-z0-9_]+)(?:(:-|:\?)([^}]*))?\}`)

// interpolate expands ${VAR}, ${VAR:-default}, ${VAR:?message} and $$ the
// way Compose does, from env.
func interpolate(s string, env map[string]string) (string, error) {
	var missing error
	out := varRef.ReplaceAllStringFunc(s, func(ref string) string {
		if ref == "$$" {
			return "$"
		}
		m := varRef.FindStringSubmatch(ref)
		v := env[m[1]]
		switch {
		case v != "":
			return v
		case m[2] == ":-":
			return m[3]
		case m[2] == ":?":
			missing = fmt.Errorf("%s: %s", m[1], m[3])
		}
		return ""
	})
	return out, missing
}

func environment(t *testing.T, s service, env map[string]string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for k, v := range s.Environment {
		got, err := interpolate(v, env)
		require.NoError(t, err, k)
		out[k] = got
	}
	return out
}

func port(t *testing.T, hostPort string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(hostPort)
	require.NoError(t, err, hostPort)
	return p
}

func TestComposeRunsCtmflowAsConfigured(t *testing.T) {
	c := loadCompose(t)
	image := loadDockerfile(t)

	for name, role := range ctmflowRoles {
		s, ok := c.Services[name]
		require.True(t, ok, "service %s", name)
		env := environment(t, s, operatorEnv)

		t.Run(name+" builds this repository's image", func(t *testing.T) {
			assert.Equal(t, ".", s.Build)
			assert.Equal(t, "ctmflow:latest", s.Image)
			assert.Empty(t, s.Entrypoint, "the image's entrypoint is the binary")
		})
		t.Run(name+" runs a real subcommand", func(t *testing.T) {
			require.Len(t, s.Command, 1)
			assert.Equal(t, string(role), s.Command[0])
			assertSubcommand(t, s.Command[0])
		})
		t.Run(name+" sets only variables ctmflow reads", func(t *testing.T) {
			for k := range s.Environment {
				assert.Contains(t, config.Names(), k)
			}
		})
		t.Run(name+" gets every variable its role requires, valid", func(t *testing.T) {
			_, err := config.Load(role, env)
			assert.NoError(t, err)
		})
		t.Run(name+" reaches the compose services", func(t *testing.T) {
			db, err := url.Parse(env["DATABASE_URL"])
			require.NoError(t, err)
			assert.Contains(t, c.Services, db.Hostname())
			pg := environment(t, c.Services["postgres"], operatorEnv)
			assert.Equal(t, "/"+pg["POSTGRES_DB"], db.Path)
			pass, _ := db.User.Password()
			assert.Equal(t, pg["POSTGRES_PASSWORD"], pass)
			assert.Equal(t, pg["POSTGRES_USER"], db.User.Username())

			host, p, err := net.SplitHostPort(env["TEMPORAL_ADDRESS"])
			require.NoError(t, err)
			assert.Contains(t, c.Services, host)
			assert.Equal(t, strconv.Itoa(temporalFrontendPort(t, c)), p)
		})
	}

	t.Run("the webhook refuses to start without its secrets", func(t *testing.T) {
		for _, k := range []string{"CTM_WEBHOOK_SECRETS", "API_TOKEN"} {
			_, err := interpolate(c.Services["webhook"].Environment[k], map[string]string{})
			assert.ErrorContains(t, err, k, "compose must stop with a message naming %s", k)
		}
	})

	t.Run("migrate runs once, before the others", func(t *testing.T) {
		assert.Equal(t, "no", c.Services["migrate"].Restart)
		for _, name := range []string{"webhook", "worker"} {
			assert.Equal(t, "service_completed_successfully",
				c.Services[name].DependsOn["migrate"].Condition, name)
		}
		assert.Equal(t, "service_completed_successfully",
			c.Services["migrate"].DependsOn["temporal-namespace"].Condition,
			"search attributes need the namespace")
	})

	t.Run("the webhook scales: a host port range onto HTTP_ADDR", func(t *testing.T) {
		s := c.Services["webhook"]
		require.Len(t, s.Ports, 1)
		hostPorts, container, ok := strings.Cut(s.Ports[0], ":")
		require.True(t, ok)
		assert.Contains(t, hostPorts, "-", "a fixed host port would clash at --scale 2")
		assert.Equal(t, port(t, environment(t, s, operatorEnv)["HTTP_ADDR"]), container)
		assert.Contains(t, image.exposed, container)
		assert.Empty(t, c.Services["worker"].Ports, "workers publish nothing")
		assert.Contains(t, image.exposed, port(t, c.Services["worker"].Environment["METRICS_ADDR"]))
	})

	t.Run("stopping waits longer than the shutdown timeout", func(t *testing.T) {
		for _, name := range []string{"webhook", "worker"} {
			s := c.Services[name]
			env := environment(t, s, operatorEnv)
			cfg, err := config.Load("", env)
			require.NoError(t, err)
			grace, err := time.ParseDuration(s.StopGracePeriod)
			require.NoError(t, err, "%s needs stop_grace_period (Docker's default is 10s)", name)
			assert.Greater(t, grace, cfg.ShutdownTimeout, name)
		}
	})
}

func TestComposeHealthChecks(t *testing.T) {
	c := loadCompose(t)
	image := loadDockerfile(t)
	// The address each process serves its health routes on.
	listens := map[string]string{"webhook": "HTTP_ADDR", "worker": "METRICS_ADDR"}

	for name, variable := range listens {
		t.Run(name, func(t *testing.T) {
			s := c.Services[name]
			require.NotNil(t, s.Healthcheck)
			test := s.Healthcheck.Test
			require.Len(t, test, 4)
			assert.Equal(t, "CMD", test[0], "the image has no shell")
			assert.Equal(t, image.entrypoint, test[1])
			assert.Equal(t, "probe", test[2])
			assertSubcommand(t, test[2])

			u, err := url.Parse(test[3])
			require.NoError(t, err)
			assert.Equal(t, "127.0.0.1", u.Hostname())
			env := environment(t, s, operatorEnv)
			assert.Equal(t, port(t, env[variable]), u.Port())

			// The path is one the process's router answers.
			h := handlerOf(t, name)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, u.Path, nil))
			assert.Contains(t, []int{http.StatusOK, http.StatusServiceUnavailable}, rec.Code,
				"%s answers %s with %d", name, u.Path, rec.Code)
		})
	}
}

// handlerOf builds the HTTP handler the named process serves, against a
// database and a Temporal that need not answer.
func handlerOf(t *testing.T, name string) http.Handler {
	t.Helper()
	dbURL := testenv.SQLiteURL(t)
	cfg, err := config.Load(config.RoleDev, map[string]string{"DATABASE_URL": dbURL})
	require.NoError(t, err)
	tc, err := engine.Dial(context.Background(), engine.Options{HostPort: "127.0.0.1:1", Lazy: true})
	require.NoError(t, err)
	t.Cleanup(tc.Close)
	d := app.Deps{
		Config: cfg, Log: slog.New(slog.DiscardHandler),
		Store: testenv.Store(t, dbURL), Temporal: tc, Metrics: metrics.New(),
	}
	if name == "worker" {
		return app.NewOpsHandler(d)
	}
	return app.NewHandler(d, inbox.New(d.Store, nil, inbox.Options{}))
}

// assertSubcommand checks that name is a subcommand of the binary.
func assertSubcommand(t *testing.T, name string) {
	t.Helper()
	var out bytes.Buffer
	code := cli.Execute([]string{name, "--help"}, &out, &out)
	assert.Equal(t, cli.ExitOK, code, out.String())
	assert.Contains(t, out.String(), "ctmflow "+name, "%q is not a ctmflow subcommand", name)
}

func temporalFrontendPort(t *testing.T, c compose) int {
	t.Helper()
	return renderTemporal(t, c).Services["frontend"].RPC.GRPCPort
}

// renderTemporal renders the server's embedded configuration template
// from the temporal service's environment, as `temporal-server start`
// does in the image.
func renderTemporal(t *testing.T, c compose) *temporalconfig.Config {
	t.Helper()
	for k, v := range environment(t, c.Services["temporal"], operatorEnv) {
		t.Setenv(k, v)
	}
	cfg, err := temporalconfig.Load(temporalconfig.WithEmbedded())
	require.NoError(t, err)
	return cfg
}

func TestComposeTemporal(t *testing.T) {
	c := loadCompose(t)
	temporal := c.Services["temporal"]
	env := environment(t, temporal, operatorEnv)
	cfg := renderTemporal(t, c)
	pg := environment(t, c.Services["postgres"], operatorEnv)

	t.Run("stores on the compose postgres", func(t *testing.T) {
		for _, store := range []string{cfg.Persistence.DefaultStore, cfg.Persistence.VisibilityStore} {
			sql := cfg.Persistence.DataStores[store].SQL
			require.NotNil(t, sql, store)
			assert.Equal(t, "postgres12", sql.PluginName)
			assert.Equal(t, "postgres:5432", sql.ConnectAddr)
			assert.Equal(t, pg["POSTGRES_USER"], sql.User)
			assert.Equal(t, pg["POSTGRES_PASSWORD"], sql.Password)
		}
		assert.Equal(t, "temporal", cfg.Persistence.DataStores[cfg.Persistence.DefaultStore].SQL.DatabaseName)
		assert.Equal(t, "temporal_visibility",
			cfg.Persistence.DataStores[cfg.Persistence.VisibilityStore].SQL.DatabaseName)
		assert.EqualValues(t, 64, cfg.Persistence.NumHistoryShards)
	})

	t.Run("the schema job prepares those databases", func(t *testing.T) {
		job := c.Services["temporal-schema"]
		jobEnv := environment(t, job, operatorEnv)
		assert.Equal(t, "postgres12", jobEnv["SQL_PLUGIN"])
		assert.Equal(t, env["POSTGRES_SEEDS"], jobEnv["SQL_HOST"])
		assert.Equal(t, env["POSTGRES_PWD"], jobEnv["SQL_PASSWORD"])
		assert.Equal(t, env["POSTGRES_USER"], jobEnv["SQL_USER"])
		script := strings.Join(job.Command, "\n")
		assert.Contains(t, script, "for db in temporal temporal_visibility")
		assert.Equal(t, temporal.DependsOn["temporal-schema"].Condition, "service_completed_successfully")

		// The versioned schema directories the script names ship with
		// the server release the images are built from.
		dir := moduleDir(t, "go.temporal.io/server")
		require.Contains(t, script, "/etc/temporal/schema/postgresql/v12/$$dir/versioned")
		for _, sub := range []string{"temporal", "visibility"} {
			assert.DirExists(t, filepath.Join(dir, "schema/postgresql/v12", sub, "versioned"))
		}
	})

	t.Run("dynamic config is mounted and loads cleanly", func(t *testing.T) {
		require.NotNil(t, cfg.DynamicConfigClient)
		var host string
		for _, v := range temporal.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) >= 2 && parts[1] == cfg.DynamicConfigClient.Filepath {
				host = parts[0]
			}
		}
		require.NotEmpty(t, host, "no volume mounts %s", cfg.DynamicConfigClient.Filepath)
		b, err := os.ReadFile(filepath.Join("..", host))
		require.NoError(t, err)
		loaded := dynamicconfig.LoadYamlFile(b)
		assert.Empty(t, loaded.Errors)
		assert.Empty(t, loaded.Warnings)
		assert.NotEmpty(t, loaded.Map)
	})

	t.Run("everyone dials the frontend's port", func(t *testing.T) {
		want := "temporal:" + strconv.Itoa(cfg.Services["frontend"].RPC.GRPCPort)
		for _, name := range []string{"temporal-namespace", "temporal-ui"} {
			assert.Equal(t, want, c.Services[name].Environment["TEMPORAL_ADDRESS"], name)
		}
		assert.Equal(t, "0.0.0.0", cfg.Services["frontend"].RPC.BindOnIP)
		assert.Equal(t, []string{"CMD", "nc", "-z", "127.0.0.1", strconv.Itoa(cfg.Services["frontend"].RPC.GRPCPort)},
			temporal.Healthcheck.Test)
	})

	t.Run("images are pinned", func(t *testing.T) {
		for name, s := range c.Services {
			if s.Build != "" {
				continue
			}
			img, err := interpolate(s.Image, nil)
			require.NoError(t, err)
			_, tag, ok := strings.Cut(img, ":")
			assert.True(t, ok && tag != "latest", "%s: %s", name, img)
		}
		for _, name := range []string{"temporal", "temporal-schema", "temporal-namespace"} {
			img, _ := interpolate(c.Services[name].Image, nil)
			assert.True(t, strings.HasSuffix(img, ":1.32.0"), "%s runs Temporal 1.32: %s", name, img)
		}
		ui, _ := interpolate(c.Services["temporal-ui"].Image, nil)
		uiVersion := strings.TrimPrefix(moduleVersion(t, "github.com/temporalio/ui-server/v2"), "v")
		assert.Equal(t, "temporalio/ui:"+uiVersion, ui)
	})
}

func moduleDir(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", path).Output()
	require.NoError(t, err)
	return strings.TrimSpace(string(out))
}

func moduleVersion(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", path).Output()
	require.NoError(t, err)
	return strings.TrimSpace(string(out))
}
