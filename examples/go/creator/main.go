// Command creator creates a report Job and writes the context of its span, with the baggage
// tenant=acme, on the Job's annotations: jobtrace makes the Job's span a child of it.
//
// Usage: creator NAMESPACE JOB_PROGRAM [JOB_ARGS...]
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"jobtrace.dev/examples/go/internal/reportjob"
	"jobtrace.dev/examples/go/internal/tracing"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: creator NAMESPACE JOB_PROGRAM [JOB_ARGS...]")
		os.Exit(2)
	}
	if err := run(context.Background(), os.Args[1], os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "creator:", err)
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
	ctx, span := otel.Tracer("jobtrace.dev/examples/go/creator").Start(ctx, "create-report-job")

	job := reportjob.New(command)
	// docs:begin creator
	// The span's context and the baggage become the traceparent and baggage annotations.
	job.Annotations = map[string]string{}
	otel.GetTextMapPropagator().Inject(ctx, propagation.MapCarrier(job.Annotations))
	created, err := clientset.BatchV1().Jobs(namespace).Create(ctx, job, metav1.CreateOptions{})
	// docs:end creator
	if err != nil {
		err = fmt.Errorf("create the Job in %s: %w", namespace, err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
	// Flush the span, whether the create succeeded or not.
	if err := errors.Join(err, provider.Shutdown(ctx)); err != nil {
		return err
	}
	fmt.Printf("created Job %s/%s in trace %s\n", namespace, created.Name, span.SpanContext().TraceID())
	return nil
}
