// Command hearth is a Matrix homeserver in one binary.
//
//	hearth [serve] [flags]            run the server (the default)
//	hearth user create NAME [--admin] [--password-file FILE]
//	hearth user list
//	hearth user reset-password NAME [--password-file FILE]
//	hearth bench --url URL [--users N] [--rooms N] [--messages N] [--concurrency N] [--pid PID] [--json]
//	hearth version
//
// Every flag FOO-BAR may also be set as the environment variable
// HEARTH_FOO_BAR; a flag on the command line wins.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"hearth/media"
	"hearth/server"
	"hearth/server/accounts"
	"hearth/server/bench"
	"hearth/server/mxerr"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := run(os.Args[1:]); err != nil {
		msg := err.Error()
		if e, ok := mxerr.As(err); ok {
			msg = e.Message // an operator needs the words, not the HTTP status
		}
		fmt.Fprintln(os.Stderr, "hearth:", msg)
		os.Exit(1)
	}
}

func run(args []string) error {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(args)
	case "user":
		return userCmd(args)
	case "bench":
		return benchCmd(args)
	case "version":
		fmt.Printf("hearth %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return nil
	case "help", "-h", "--help":
		fmt.Print(usage)
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", cmd, usage)
}

const usage = `usage:
  hearth [serve] [flags]       run the homeserver (hearth serve --help for flags)
  hearth user create NAME [--admin] [--password-file FILE]
  hearth user list
  hearth user reset-password NAME [--password-file FILE]
  hearth bench --url URL [--users N] [--rooms N] [--messages N] [--concurrency N]
               [--pid PID] [--json] [--shared-secret S]
                               load-test any homeserver (hearth bench --help for flags)
  hearth version
`

// parseFlags parses args after taking defaults from HEARTH_* variables.
func parseFlags(fs *flag.FlagSet, args []string) error {
	var bad error
	fs.VisitAll(func(f *flag.Flag) {
		env := "HEARTH_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if err := f.Value.Set(v); err != nil && bad == nil {
				bad = fmt.Errorf("%s=%q: %w", env, v, err)
			}
		}
	})
	if bad != nil {
		return bad
	}
	return fs.Parse(args)
}

type commonFlags struct {
	data       string
	serverName string
	logLevel   string
}

func (c *commonFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.data, "data", "./hearth-data", "data directory (database, keys, media)")
	fs.StringVar(&c.serverName, "server-name", "localhost", "the server's name, the part after ':' in user IDs; fixed on first start")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
}

func (c *commonFlags) logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})), nil
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var c commonFlags
	c.register(fs)
	httpAddr := fs.String("http", "127.0.0.1:8008", "plain-HTTP listener for the client API")
	publicURL := fs.String("public-url", "", "base URL clients reach this server at, announced in /.well-known/matrix/client")
	openReg := fs.Bool("open-registration", false, "let anyone register (m.login.dummy); otherwise registration needs a token")
	secret := fs.String("registration-shared-secret", "", "enable Synapse's shared-secret registration API with this secret")
	noRate := fs.Bool("no-rate-limit", false, "turn rate limiting off (for test suites)")
	noPresence := fs.Bool("no-presence", false, "turn presence off: nobody is shown online")
	legacyMedia := fs.Bool("legacy-media", false, "also serve local media on the deprecated unauthenticated /_matrix/media download endpoints, for old clients")
	maxUpload := fs.Int64("max-upload-size", media.DefaultMaxUploadSize, "largest media upload in bytes")
	allowPrivate := fs.Bool("allow-private-addresses", false, "let outbound requests (URL previews, federation, identity servers) reach private, loopback and link-local addresses")
	fedAddr := fs.String("federation", "", `HTTPS listener for federation (and the client and media APIs); default ":8448" when --tls-cert is set`)
	tlsCert := fs.String("tls-cert", "", "PEM certificate (chain) of the HTTPS listener")
	tlsKey := fs.String("tls-key", "", "PEM private key of --tls-cert")
	trustCA := fs.String("trust-ca", "", "PEM CA trusted, besides the system roots, for outbound federation TLS")
	noFed := fs.Bool("no-federation", false, "a closed server: no federation listener, no federation or key API")
	wellKnownServer := fs.String("well-known-server", "", "HOST[:PORT] other servers reach our federation API at, announced in /.well-known/matrix/server (delegation)")
	deviceNames := fs.Bool("device-names-over-federation", false, "show other servers our users' device names (Synapse's allow_device_name_lookup_over_federation)")
	complement := fs.Bool("complement", false, "run as Complement's homeserver image expects (SERVER_NAME, 0.0.0.0:8008, open registration)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := c.logger()
	if err != nil {
		return err
	}
	cfg := server.Config{
		DataDir: c.data, ServerName: c.serverName, HTTPAddr: *httpAddr, PublicURL: strings.TrimRight(*publicURL, "/"),
		OpenRegistration: *openReg, RegistrationSharedSecret: *secret, NoRateLimit: *noRate, NoPresence: *noPresence,
		Version: version, Log: log, LegacyMedia: *legacyMedia, MaxUploadSize: *maxUpload,
		AllowPrivateAddresses: *allowPrivate,
		FederationAddr:        *fedAddr, TLSCertFile: *tlsCert, TLSKeyFile: *tlsKey, TrustCAFile: *trustCA,
		NoFederation: *noFed, WellKnownServer: *wellKnownServer, DeviceNamesOverFederation: *deviceNames,
	}
	if cfg.FederationAddr == "" && cfg.TLSCertFile != "" {
		cfg.FederationAddr = ":8448"
	}
	if *complement {
		// Complement sets only SERVER_NAME; the rest is what it expects of
		// every homeserver image, and cheap hashing keeps its suite fast.
		if name := os.Getenv("SERVER_NAME"); name != "" {
			cfg.ServerName = name
		}
		cfg.HTTPAddr = "0.0.0.0:8008"
		cfg.OpenRegistration, cfg.NoRateLimit = true, true
		cfg.RegistrationSharedSecret = "complement"
		cfg.Argon2 = accounts.CheapArgon2
		// Its media tests use the legacy download paths, and the pages it
		// previews are on its Docker network.
		cfg.LegacyMedia, cfg.AllowPrivateAddresses = true, true
		// Its device-list tests read device names over federation.
		cfg.DeviceNamesOverFederation = true
		if err := server.ComplementTLS(&cfg, "/complement/ca"); err != nil {
			return err
		}
	}

	// A heap twice the live data between collections, not the default
	// equal: about a fifth less CPU per sent message, for a few MB more
	// resident. An operator's GOGC still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(200)
	}
	// Catch signals before the listener opens: a supervisor may send
	// SIGTERM as soon as the server answers, and the default action would
	// kill it without closing the database.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	s, err := server.Open(cfg)
	if err != nil {
		return err
	}
	if err := s.Start(); err != nil {
		s.Shutdown(context.Background())
		return err
	}
	log.Info("hearth started", "version", version, "data", cfg.DataDir, "startup_ms", time.Since(start).Milliseconds())
	if tok := s.BootstrapToken(); tok != "" {
		fmt.Fprintf(os.Stderr, bootstrapBanner, "http://"+s.Addr(), tok)
	}

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case serveErr = <-s.Errors():
		log.Error("listener failed", "err", serveErr)
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return errors.Join(serveErr, s.Shutdown(shutCtx))
}

const bootstrapBanner = `
================================================================
Registration is closed. Create the first account, which will be
the server admin, from any Matrix client at
    %s
with this one-time registration token:
    %s
================================================================

`

// openForCLI opens the data directory as the server recorded it, for
// commands that run while the server is stopped. Only mayInit commands
// (user create, so that an admin can exist before the first start) may
// initialise an empty directory, under --server-name.
func openForCLI(c *commonFlags, mayInit bool) (*server.Server, error) {
	log, err := c.logger()
	if err != nil {
		return nil, err
	}
	name, err := server.RecordedServerName(c.data)
	if err != nil {
		return nil, err
	}
	if name == "" && mayInit {
		name = c.serverName
	}
	if name == "" {
		// A mistyped --data must not quietly make a second server.
		return nil, fmt.Errorf("no Hearth database in %s: check --data, or start `hearth serve` there once first", c.data)
	}
	// Registration is left "open" so that no bootstrap token is made: the
	// CLI serves no requests.
	return server.Open(server.Config{DataDir: c.data, ServerName: name, OpenRegistration: true, Log: log})
}

func userCmd(args []string) error {
	if len(args) == 0 {
		return errors.New("user: want create, list or reset-password\n" + usage)
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("user "+sub, flag.ContinueOnError)
	var c commonFlags
	c.register(fs)
	admin := fs.Bool("admin", false, "make the account a server admin (create)")
	pwFile := fs.String("password-file", "", "read the password from this file instead of prompting")
	// Flags may follow the user name: parse around it.
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if name == "" && fs.NArg() > 0 {
		name = fs.Arg(0)
	}
	s, err := openForCLI(&c, sub == "create")
	if err != nil {
		return err
	}
	defer s.Shutdown(context.Background())
	acc := s.Accounts()

	switch sub {
	case "list":
		users, err := acc.Users()
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "USER ID\tADMIN\tDEACTIVATED\tCREATED")
		for _, u := range users {
			fmt.Fprintf(w, "%s\t%v\t%v\t%s\n", acc.UserID(u.Localpart), u.Admin, u.Deactivated,
				time.UnixMilli(u.CreatedTS).UTC().Format(time.RFC3339))
		}
		return w.Flush()
	case "create":
		if name == "" {
			return errors.New("user create: missing NAME")
		}
		lp := strings.ToLower(strings.TrimPrefix(strings.SplitN(name, ":", 2)[0], "@"))
		if err := acc.Available(lp); err != nil {
			if e, ok := mxerr.As(err); ok && e.Code == "M_USER_IN_USE" {
				return fmt.Errorf("%s already exists", acc.UserID(lp))
			}
			return err
		}
		pw, err := readPassword(*pwFile)
		if err != nil {
			return err
		}
		login, err := acc.CreateUser(accounts.NewUser{Localpart: lp, Password: pw, Admin: *admin}, nil)
		if err != nil {
			return err
		}
		fmt.Printf("created %s (admin: %v)\n", login.UserID, *admin)
		return nil
	case "reset-password":
		if name == "" {
			return errors.New("user reset-password: missing NAME")
		}
		lp, ok := acc.ParseLoginUser(name)
		if !ok {
			return fmt.Errorf("not a local user: %s", name)
		}
		if _, err := acc.User(lp); err != nil {
			return fmt.Errorf("no such user: %s", acc.UserID(lp))
		}
		pw, err := readPassword(*pwFile)
		if err != nil {
			return err
		}
		// A reset is usually because the password leaked: log every
		// device out with it.
		if err := acc.SetPassword(lp, pw, true, ""); err != nil {
			return err
		}
		fmt.Printf("password of %s reset; all its devices were logged out\n", acc.UserID(lp))
		return nil
	}
	return fmt.Errorf("user: unknown subcommand %q", sub)
}

// readPassword reads a password from file, or prompts twice on a terminal,
// or reads one line from standard input.
func readPassword(file string) (string, error) {
	var pw string
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", err
		}
		pw = strings.TrimRight(string(b), "\r\n")
	case term.IsTerminal(int(os.Stdin.Fd())):
		fmt.Fprint(os.Stderr, "Password: ")
		a, err := term.ReadPassword(int(os.Stdin.Fd()))
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return "", err
		}
		fmt.Fprint(os.Stderr, "Again: ")
		b, err := term.ReadPassword(int(os.Stdin.Fd()))
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return "", err
		}
		if string(a) != string(b) {
			return "", errors.New("the passwords differ")
		}
		pw = string(a)
	default:
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", err
		}
		pw = strings.TrimRight(line, "\r\n")
	}
	if pw == "" {
		return "", errors.New("the password must not be empty")
	}
	return pw, nil
}

// benchCmd is `hearth bench`: it measures a running homeserver, ours or
// another, through the Client-Server API and prints one table.
func benchCmd(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var cfg bench.Config
	fs.StringVar(&cfg.URL, "url", "http://127.0.0.1:8008", "the homeserver's client API base URL")
	fs.IntVar(&cfg.Users, "users", bench.DefaultUsers, "accounts to register (names are unique per run)")
	fs.IntVar(&cfg.Rooms, "rooms", bench.DefaultRooms, "rooms to create")
	fs.IntVar(&cfg.Messages, "messages", bench.DefaultMessages, "messages per send phase")
	fs.IntVar(&cfg.Concurrency, "concurrency", bench.DefaultConcurrency, "clients sending at once")
	fs.IntVar(&cfg.PID, "pid", 0, "the server's process ID: sample its RSS and CPU time from /proc")
	fs.BoolVar(&cfg.JSON, "json", false, "print one JSON object instead of the table")
	fs.StringVar(&cfg.SharedSecret, "shared-secret", "", "register through /_synapse/admin/v1/register with this secret instead of open registration")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench: unexpected argument %q", fs.Arg(0))
	}
	// Ctrl-C stops the run and still prints what was measured.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	_, err := bench.Run(ctx, cfg, os.Stdout, os.Stderr)
	return err
}
