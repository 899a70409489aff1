// Package reportjob builds the Job that both creators submit.
package reportjob

import (
	"os"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// New returns a Job running command once, which sends its spans where this process sends its
// own, as the service report-task.
func New(command []string) *batchv1.Job {
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "report-"},
		Spec: batchv1.JobSpec{
			BackoffLimit: new(int32(0)),
			Template: corev1.PodTemplateSpec{
				// What the local pod runner of jobtrace's tests selects; a cluster ignores it.
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"sim.jobtrace.dev/runner": "true"}},
				Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever,
					Containers: []corev1.Container{{
						Name:    "report",
						Image:   "example.invalid/report",
						Command: command,
						Env: []corev1.EnvVar{
							{Name: "OTEL_EXPORTER_OTLP_ENDPOINT", Value: os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT")},
							{Name: "OTEL_EXPORTER_OTLP_PROTOCOL", Value: os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")},
							{Name: "OTEL_SERVICE_NAME", Value: "report-task"},
						},
					}},
				},
			},
		},
	}
}
