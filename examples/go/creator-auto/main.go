// Command creator-auto creates a report Job without touching it for tracing: the Kubernetes
// client's HTTP transport is instrumented, so the create request carries the context of its
// client span, a child of this program's span, and the baggage tenant=acme as traceparent and
// baggage headers, which jobtrace (run with --request-context) reads.
//
// Usage: creator-auto NAMESPACE JOB_PROGRAM [JOB_ARGS...]
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/codes"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"jobtrace.dev/examples/go/internal/reportjob"
	"jobtrace.dev/examples/go/internal/tracing"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: creator-auto NAMESPACE JOB_PROGRAM [JOB_ARGS...]")
		os.Exit(2)
	}
	if err := run(context.Background(), os.Args[1], os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "creator-auto:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, namespace string, command []string) error {
	provider, err := tracing.Start(ctx)
	if err != nil {
		return err
	}
	// KUBECONFIG, else ~/.kube/config, as kubectl reads them.
	config, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		clientcmd.NewDefaultClientConfigLoadingRules(), &clientcmd.ConfigOverrides{},
	).ClientConfig()
	if err != nil {
		return fmt.Errorf("load the kubeconfig: %w", err)
	}
	// docs:begin creator
	// Every request gets a client span and sends its context and the baggage as headers.
	config.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return otelhttp.NewTransport(rt)
	})
	// docs:end creator
	clientset, err := kubernetes.NewForConfig(config)
	if err != nil {
		return fmt.Errorf("create the Kubernetes client: %w", err)
	}

	tenant, err := baggage.NewMemberRaw("tenant", "acme")
	if err != nil {
		return err
	}
	bag, err := baggage.New(tenant)
	if err != nil {
		return err
	}
	ctx = baggage.ContextWithBaggage(ctx, bag)
	ctx, span := otel.Tracer("jobtrace.dev/examples/go/creator-auto").Start(ctx, "create-report-job")

	created, err := clientset.BatchV1().Jobs(namespace).Create(ctx, reportjob.New(command), metav1.CreateOptions{})
	if err != nil {
		err = fmt.Errorf("create the Job in %s: %w", namespace, err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
	// Flush the spans, whether the create succeeded or not.
	if err := errors.Join(err, provider.Shutdown(ctx)); err != nil {
		return err
	}
	fmt.Printf("created Job %s/%s in trace %s\n", namespace, created.Name, span.SpanContext().TraceID())
	return nil
}
