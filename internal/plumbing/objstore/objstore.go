// Package objstore connects to S3-compatible storage the AWS way and names its failures, so
// the registry and the deploy state can tell "not found" from "conflict" from "unreachable".
package objstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Config is how to reach the storage. FromEnv fills it from the AWS variables.
type Config struct {
	Endpoint  string // host:port or a URL; an http:// URL means plain HTTP
	Region    string
	AccessKey string
	SecretKey string
	PlainHTTP bool // for a bare host:port endpoint without TLS
}

// FromEnv reads AWS_ENDPOINT_URL_S3 (or AWS_ENDPOINT_URL), AWS_REGION (or AWS_DEFAULT_REGION),
// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
func FromEnv() Config {
	first := func(keys ...string) string {
		for _, k := range keys {
			if v := os.Getenv(k); v != "" {
				return v
			}
		}
		return ""
	}
	return Config{
		Endpoint:  first("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
		Region:    first("AWS_REGION", "AWS_DEFAULT_REGION"),
		AccessKey: os.Getenv("AWS_ACCESS_KEY_ID"),
		SecretKey: os.Getenv("AWS_SECRET_ACCESS_KEY"),
	}
}

// String describes the endpoint without credentials, for errors and logs.
func (c Config) String() string {
	host, secure, err := c.hostAndTLS()
	if err != nil {
		return c.Endpoint
	}
	scheme := "https"
	if !secure {
		scheme = "http"
	}
	return scheme + "://" + host
}

func (c Config) hostAndTLS() (string, bool, error) {
	if c.Endpoint == "" {
		return "s3.amazonaws.com", true, nil
	}
	if strings.Contains(c.Endpoint, "://") {
		u, err := url.Parse(c.Endpoint)
		if err != nil || u.Host == "" {
			return "", false, fmt.Errorf("S3 endpoint %q is not a URL or host:port", c.Endpoint)
		}
		if u.Path != "" && u.Path != "/" {
			return "", false, fmt.Errorf("S3 endpoint %q has a path; give only scheme://host:port", c.Endpoint)
		}
		switch u.Scheme {
		case "http":
			return u.Host, false, nil
		case "https":
			return u.Host, true, nil
		default:
			return "", false, fmt.Errorf("S3 endpoint %q: scheme must be http or https", c.Endpoint)
		}
	}
	if strings.Contains(c.Endpoint, "/") {
		hint := ""
		if i := strings.Index(c.Endpoint, "//"); i >= 0 {
			hint = fmt.Sprintf(" (did you mean http://%s or https://%s?)", c.Endpoint[i+2:], c.Endpoint[i+2:])
		}
		return "", false, fmt.Errorf("S3 endpoint %q is neither a URL nor host:port: the scheme looks mistyped%s; give http://host:port, https://host:port or host:port", c.Endpoint, hint)
	}
	return c.Endpoint, !c.PlainHTTP, nil
}

// IsAWS says no endpoint is configured, so requests go to AWS S3.
func (c Config) IsAWS() bool { return c.Endpoint == "" }

// NewClient builds a minio-go client. Credentials come from the config, or else the usual AWS
// chain (environment, shared files, instance roles).
func NewClient(c Config) (*minio.Client, error) {
	host, secure, err := c.hostAndTLS()
	if err != nil {
		return nil, err
	}
	var creds *credentials.Credentials
	if c.AccessKey != "" || c.SecretKey != "" {
		if c.AccessKey == "" || c.SecretKey == "" {
			return nil, errors.New("S3 credentials: set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither")
		}
		creds = credentials.NewStaticV4(c.AccessKey, c.SecretKey, "")
	} else {
		creds = credentials.NewChainCredentials([]credentials.Provider{&credentials.EnvAWS{}, &credentials.FileAWSCredentials{}, &credentials.IAM{}})
	}
	client, err := minio.New(host, &minio.Options{Creds: creds, Secure: secure, Region: c.Region, MaxRetries: 3})
	if err != nil {
		return nil, fmt.Errorf("S3 client for %s: %w", c, err)
	}
	return client, nil
}

// Sentinel kinds of storage failure; Classify wraps minio-go errors in them.
var (
	ErrNotFound     = errors.New("not found")
	ErrConflict     = errors.New("conflict")
	ErrUnreachable  = errors.New("storage unreachable")
	ErrAccessDenied = errors.New("access denied")
	ErrNoSuchBucket = errors.New("no such bucket")
)

// Classify maps an error from minio-go onto the sentinels above (keeping the original).
func Classify(err error) error {
	if err == nil {
		return nil
	}
	resp := minio.ToErrorResponse(err)
	switch {
	case resp.Code == "NoSuchKey" || resp.Code == "NoSuchVersion":
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case resp.Code == "NoSuchBucket":
		return fmt.Errorf("%w: %w", ErrNoSuchBucket, err)
	case resp.Code == "PreconditionFailed" || resp.StatusCode == http.StatusPreconditionFailed || resp.Code == "ConditionalRequestConflict":
		return fmt.Errorf("%w: %w", ErrConflict, err)
	case resp.Code == "AccessDenied" || resp.Code == "InvalidAccessKeyId" || resp.Code == "SignatureDoesNotMatch":
		return fmt.Errorf("%w: %w", ErrAccessDenied, err)
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	if strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		return fmt.Errorf("%w: the endpoint speaks plain HTTP; give it as http://host:port or add --s3-plain-http (MODELSHIP_S3_PLAIN_HTTP=true): %w", ErrUnreachable, err)
	}
	var netErr net.Error
	var opErr *net.OpError
	if errors.As(err, &netErr) || errors.As(err, &opErr) || errors.Is(err, context.DeadlineExceeded) ||
		strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "no such host") {
		return fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	return err
}

// EnsureBucket creates bucket when it is missing and, when versioned, turns on versioning so
// every earlier object stays readable. Servers without versioning are told apart, not failed.
func EnsureBucket(ctx context.Context, client *minio.Client, bucket string, versioned bool) error {
	exists, err := client.BucketExists(ctx, bucket)
	if err != nil {
		return fmt.Errorf("check bucket %q at %s: %w", bucket, client.EndpointURL(), Classify(err))
	}
	if !exists {
		if err := client.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
			resp := minio.ToErrorResponse(err)
			if resp.Code != "BucketAlreadyOwnedByYou" && resp.Code != "BucketAlreadyExists" {
				return fmt.Errorf("create bucket %q at %s: %w", bucket, client.EndpointURL(), Classify(err))
			}
		}
	}
	if versioned {
		if err := client.EnableVersioning(ctx, bucket); err != nil {
			resp := minio.ToErrorResponse(err)
			if resp.Code == "NotImplemented" || resp.StatusCode == http.StatusNotImplemented {
				return nil
			}
			return fmt.Errorf("enable versioning on bucket %q: %w", bucket, Classify(err))
		}
	}
	return nil
}
