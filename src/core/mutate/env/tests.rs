use super::*;

#[test]
fn literals_are_percent_encoded_then_escaped_for_the_kubelet() {
    for (received, written) in [
        ("nightly-report.v2", "nightly-report.v2"),
        (
            "0b7c3f1e-5d2a-4c39-9a57-1f8e2d6b4c10",
            "0b7c3f1e-5d2a-4c39-9a57-1f8e2d6b4c10",
        ),
        ("a,b=c%d", "a%2Cb%3Dc%25d"),
        ("$(JOBTRACE_POD_UID)", "$$(JOBTRACE_POD_UID)"),
        ("u$$1", "u$$$$1"),
        (" x;\"\\é\n", "%20x%3B%22%5C%C3%A9%0A"),
    ] {
        assert_eq!(
            AttributeValue::Literal(received.to_owned()).written(),
            written,
            "{received}"
        );
    }
    assert_eq!(
        AttributeValue::Helper(Helper::PodUid).written(),
        "$(JOBTRACE_POD_UID)"
    );
}

#[test]
fn kubelet_references_are_read_as_the_kubelet_reads_them() {
    for (value, referenced) in [
        ("k8s.pod.uid=$(JOBTRACE_POD_UID)", true),
        ("a=$$$(JOBTRACE_POD_UID)", true),
        ("a=$$(JOBTRACE_POD_UID)", false),
        ("a=$(OTHER),b=$(JOBTRACE_POD_UID_2)", false),
        ("a=$JOBTRACE_POD_UID", false),
        ("a=$(JOBTRACE_POD_UID", false),
    ] {
        assert_eq!(
            kubelet_references(value, env::POD_UID),
            referenced,
            "{value}"
        );
    }
}

/// The env a Job's mutation writes in its containers.
mod through_the_job {
    use serde_json::{Value, json};

    use crate::core::mutate::job::tests::{CONTAINERS, run};
    use jobtrace_testkit::fixtures::{SPAN_A, SPAN_B};
    use jobtrace_testkit::fixtures::{TP, env_value, job};

    #[test]
    fn user_set_variables_are_never_overridden() {
        let mut object = job(&json!({ "traceparent": TP, "baggage": "k=v" }));
        object["spec"]["template"]["spec"]["containers"][0]["env"] = json!([
            { "name": "TRACEPARENT", "value": "00-11111111111111111111111111111111-2222222222222222-01" },
            { "name": "BAGGAGE", "valueFrom": { "secretKeyRef": { "name": "s", "key": "k" } } }
        ]);
        let (mutation, out) = run(&object, SPAN_A);
        assert_eq!(
            env_value(&out, CONTAINERS[1], "TRACEPARENT"),
            Some(&json!(
                "00-11111111111111111111111111111111-2222222222222222-01"
            ))
        );
        assert!(
            env_value(&out, CONTAINERS[1], "BAGGAGE")
                .unwrap()
                .get("secretKeyRef")
                .is_some()
        );
        let messages: Vec<&str> = mutation
            .warnings
            .iter()
            .map(|w| w.message.as_str())
            .collect();
        assert_eq!(
            messages,
            [
                "container \"main\" sets TRACEPARENT itself; jobtrace left it unchanged",
                "container \"main\" sets BAGGAGE itself; jobtrace left it unchanged"
            ]
        );
        let (again, _) = run(&out, SPAN_B);
        assert!(again.patch.0.is_empty());
    }

    #[test]
    fn user_resource_attributes_are_extended_not_overridden() {
        let mut object = job(&json!({ "traceparent": TP }));
        object["spec"]["template"]["spec"]["containers"][0]["env"] = json!([
            { "name": "A", "value": "1" },
            { "name": "OTEL_RESOURCE_ATTRIBUTES", "value": "service.name=reports,k8s.job.name=custom" },
            { "name": "Z", "value": "2" }
        ]);
        let (mutation, out) = run(&object, SPAN_A);
        assert!(mutation.warnings.is_empty());
        let env = out.pointer(CONTAINERS[1]).unwrap()["env"]
            .as_array()
            .unwrap();
        let names: Vec<&str> = env.iter().map(|v| v["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "A",
                "JOBTRACE_JOB_UID",
                "JOBTRACE_POD_NAME",
                "JOBTRACE_POD_UID",
                "OTEL_RESOURCE_ATTRIBUTES",
                "Z",
                "TRACEPARENT"
            ]
        );
        assert_eq!(
            env[4]["value"],
            "service.name=reports,k8s.job.name=custom,k8s.namespace.name=reports,\
             k8s.job.uid=$(JOBTRACE_JOB_UID),k8s.pod.name=$(JOBTRACE_POD_NAME),\
             k8s.pod.uid=$(JOBTRACE_POD_UID),\
             k8s.container.name=main"
        );
        let (again, _) = run(&out, SPAN_B);
        assert!(again.patch.0.is_empty(), "{:?}", again.patch);
    }

    #[test]
    fn resource_attributes_from_a_reference_are_left_with_a_warning() {
        let mut object = job(&json!({ "traceparent": TP }));
        object["spec"]["template"]["spec"]["containers"][0]["env"] = json!([
            { "name": "OTEL_RESOURCE_ATTRIBUTES", "valueFrom": { "configMapKeyRef": { "name": "c", "key": "k" } } }
        ]);
        let (mutation, out) = run(&object, SPAN_A);
        assert_eq!(mutation.warnings.len(), 1);
        assert!(mutation.warnings[0].message.contains("can't extend it"));
        assert!(env_value(&out, CONTAINERS[1], "JOBTRACE_POD_NAME").is_none());
        assert!(env_value(&out, CONTAINERS[1], "TRACEPARENT").is_some());
    }

    /// The kubelet's expansion against the variables `defined`.
    fn kubelet_expand(value: &str, defined: &[(&str, &str)]) -> String {
        jobtrace_testkit::fixtures::kubelet_expand(value, |name| {
            defined
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn kubelet_expansion_model_matches_kubernetes() {
        let defined = [("A", "1")];
        assert_eq!(
            kubelet_expand("$(A)-$$(A)-$$$(A)-$(B)-$x-$", &defined),
            "1-$(A)-$1-$(B)-$x-$"
        );
    }

    #[test]
    fn dollar_in_injected_values_reaches_the_process_byte_for_byte() {
        let baggage = "k=$(DB_PASSWORD),m=a$$b,n=$x";
        let tracestate = "rojo=$(DB_PASSWORD)";
        let object =
            job(&json!({ "traceparent": TP, "tracestate": tracestate, "baggage": baggage }));
        let (mutation, out) = run(&object, SPAN_A);
        assert!(mutation.warnings.is_empty(), "{:?}", mutation.warnings);
        let secret = [("DB_PASSWORD", "hunter2")];
        for c in CONTAINERS {
            let value = |name| {
                env_value(&out, c, name)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned()
            };
            assert_eq!(kubelet_expand(&value("BAGGAGE"), &secret), baggage, "{c}");
            assert_eq!(
                kubelet_expand(&value("TRACESTATE"), &secret),
                tracestate,
                "{c}"
            );
        }
        let (again, _) = run(&out, SPAN_B);
        assert!(again.patch.0.is_empty(), "{:?}", again.patch);
    }

    #[test]
    fn resource_attributes_expand_to_the_pod_and_job_values() {
        let (_, out) = run(&job(&json!({ "traceparent": TP })), SPAN_A);
        let value = env_value(&out, CONTAINERS[1], "OTEL_RESOURCE_ATTRIBUTES").unwrap();
        let defined = [
            ("JOBTRACE_JOB_UID", "u-1"),
            ("JOBTRACE_POD_NAME", "nightly-x"),
            ("JOBTRACE_POD_UID", "u-2"),
        ];
        assert_eq!(
            kubelet_expand(value.as_str().unwrap(), &defined),
            "k8s.namespace.name=reports,k8s.job.name=nightly,k8s.job.uid=u-1,\
             k8s.pod.name=nightly-x,k8s.pod.uid=u-2,k8s.container.name=main"
        );
    }

    /// The resource attributes an OpenTelemetry SDK reads from `value`, once the kubelet
    /// expanded it against `defined`.
    fn sdk_attributes(value: &Value, defined: &[(&str, &str)]) -> Vec<(String, String)> {
        let expanded = kubelet_expand(value.as_str().unwrap(), defined);
        crate::k8s::otlp::Resource::from_vars(
            |name| (name == "OTEL_RESOURCE_ATTRIBUTES").then(|| expanded.clone()),
            "replica",
        )
        .unwrap()
        .attributes
    }

    #[test]
    fn a_cronjob_owners_name_and_uid_reach_the_process_as_written() {
        // The apiserver validates neither as a name: the Job's creator writes them freely.
        let defined = [
            ("JOBTRACE_JOB_UID", "u-1"),
            ("JOBTRACE_POD_NAME", "nightly-x"),
            ("JOBTRACE_POD_UID", "u-2"),
            ("DB_PASSWORD", "hunter2"),
        ];
        for (name, uid) in [
            ("$(JOBTRACE_POD_UID)", "6f1c"),
            ("$(DB_PASSWORD)", "$(JOBTRACE_JOB_UID)"),
            ("a,b=c%d", "6f1c$x$$y"),
            ("n,k8s.pod.uid=forged", "%41 ;\\\"é"),
        ] {
            let mut object = job(&json!({ "traceparent": TP }));
            object["metadata"]["ownerReferences"] = json!([{
                "apiVersion": "batch/v1", "kind": "CronJob", "name": name, "uid": uid, "controller": true
            }]);
            let (mutation, out) = run(&object, SPAN_A);
            assert!(mutation.warnings.is_empty(), "{:?}", mutation.warnings);
            for c in CONTAINERS {
                let value = env_value(&out, c, "OTEL_RESOURCE_ATTRIBUTES").unwrap();
                let attributes = sdk_attributes(value, &defined);
                let get = |key: &str| {
                    attributes
                        .iter()
                        .find(|(k, _)| k == key)
                        .map(|(_, v)| v.as_str())
                };
                assert_eq!(get("k8s.cronjob.name"), Some(name), "{c}: {value}");
                assert_eq!(get("k8s.cronjob.uid"), Some(uid), "{c}: {value}");
                assert_eq!(get("k8s.pod.uid"), Some("u-2"), "{c}: {value}");
                assert_eq!(get("k8s.job.uid"), Some("u-1"), "{c}: {value}");
                assert_eq!(attributes.len(), 3 + 8, "{c}: {attributes:?}");
            }
            let (again, _) = run(&out, SPAN_B);
            assert!(again.patch.0.is_empty(), "{name}: {:?}", again.patch);
        }
    }

    #[test]
    fn an_owner_named_like_a_helper_is_no_reference_to_it() {
        let mut object = job(&json!({ "traceparent": TP }));
        object["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "batch/v1", "kind": "CronJob", "name": "$(JOBTRACE_JOB_NAME)",
            "uid": "$(JOBTRACE_POD_UID)", "controller": true
        }]);
        object["spec"]["template"]["spec"]["containers"][0]["env"] = json!([
            { "name": "OTEL_RESOURCE_ATTRIBUTES", "value": "k8s.pod.uid=mine" }
        ]);
        let (_, out) = run(&object, SPAN_A);
        assert_eq!(
            env_names(&out, CONTAINERS[1]),
            [
                "JOBTRACE_JOB_UID",
                "JOBTRACE_POD_NAME",
                "OTEL_RESOURCE_ATTRIBUTES",
                "TRACEPARENT"
            ],
            "the Job has a name and the user its own k8s.pod.uid: no other helper is used"
        );
        assert_eq!(
            env_value(&out, CONTAINERS[1], "OTEL_RESOURCE_ATTRIBUTES").unwrap(),
            "k8s.pod.uid=mine,k8s.namespace.name=reports,k8s.job.name=nightly,\
             k8s.job.uid=$(JOBTRACE_JOB_UID),k8s.pod.name=$(JOBTRACE_POD_NAME),\
             k8s.cronjob.name=$$(JOBTRACE_JOB_NAME),k8s.cronjob.uid=$$(JOBTRACE_POD_UID),\
             k8s.container.name=main"
        );
        let (again, _) = run(&out, SPAN_B);
        assert!(again.patch.0.is_empty(), "{:?}", again.patch);
    }

    #[test]
    fn env_from_keeps_resource_attributes_alone_with_a_warning() {
        let mut object = job(&json!({ "traceparent": TP }));
        object["spec"]["template"]["spec"]["containers"][0]["envFrom"] =
            json!([{ "configMapRef": { "name": "otel" } }]);
        let (mutation, out) = run(&object, SPAN_A);
        assert!(env_value(&out, CONTAINERS[1], "OTEL_RESOURCE_ATTRIBUTES").is_none());
        assert!(
            env_value(&out, CONTAINERS[1], "JOBTRACE_POD_NAME").is_none(),
            "no helper without a user"
        );
        assert_eq!(mutation.warnings.len(), 1, "{:?}", mutation.warnings);
        assert_eq!(
            mutation.warnings[0].reason,
            crate::core::context::WarningReason::EnvFrom
        );
        assert!(mutation.warnings[0].message.contains("\"main\""));
        // The context itself belongs to this Job alone: it is set whatever envFrom holds.
        assert!(env_value(&out, CONTAINERS[1], "TRACEPARENT").is_some());
        assert!(
            env_value(&out, CONTAINERS[2], "OTEL_RESOURCE_ATTRIBUTES").is_some(),
            "other containers"
        );
        let (again, _) = run(&out, SPAN_B);
        assert!(again.patch.0.is_empty(), "{:?}", again.patch);
    }

    #[test]
    fn env_from_with_a_prefix_that_cannot_define_it_is_no_reason_to_hold_back() {
        let mut object = job(&json!({ "traceparent": TP }));
        object["spec"]["template"]["spec"]["containers"][0]["envFrom"] =
            json!([{ "prefix": "APP_", "secretRef": { "name": "s" } }]);
        let (mutation, out) = run(&object, SPAN_A);
        assert!(mutation.warnings.is_empty(), "{:?}", mutation.warnings);
        assert!(env_value(&out, CONTAINERS[1], "OTEL_RESOURCE_ATTRIBUTES").is_some());
        object["spec"]["template"]["spec"]["containers"][0]["envFrom"] =
            json!([{ "prefix": "OTEL_", "secretRef": { "name": "s" } }]);
        let (mutation, _) = run(&object, SPAN_A);
        assert_eq!(
            mutation.warnings[0].reason,
            crate::core::context::WarningReason::EnvFrom,
            "OTEL_ can define it"
        );
    }

    /// Names of the container's env entries, in order.
    fn env_names(out: &Value, container: &str) -> Vec<String> {
        out.pointer(container).unwrap()["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn helpers_stand_before_resource_attributes_even_when_the_user_defined_one_after_it() {
        let mut object = job(&json!({ "traceparent": TP }));
        object["spec"]["template"]["spec"]["containers"][0]["env"] = json!([
            { "name": "OTEL_RESOURCE_ATTRIBUTES", "value": "service.name=reports" },
            { "name": "JOBTRACE_POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } }
        ]);
        let (_, out) = run(&object, SPAN_A);
        let names = env_names(&out, CONTAINERS[1]);
        let ra = names
            .iter()
            .position(|n| n == "OTEL_RESOURCE_ATTRIBUTES")
            .unwrap();
        for helper in ["JOBTRACE_JOB_UID", "JOBTRACE_POD_NAME", "JOBTRACE_POD_UID"] {
            let first = names.iter().position(|n| n == helper).expect(helper);
            assert!(
                first < ra,
                "{helper} before OTEL_RESOURCE_ATTRIBUTES: {names:?}"
            );
        }
        let (again, _) = run(&out, SPAN_B);
        assert!(again.patch.0.is_empty(), "{:?}", again.patch);
    }

    #[test]
    fn a_user_variable_of_a_helpers_name_is_not_taken_for_the_helper() {
        let mut object = job(&json!({ "traceparent": TP }));
        object["spec"]["template"]["spec"]["containers"][0]["env"] = json!([
            { "name": "JOBTRACE_POD_NAME", "value": "not-the-pod" }
        ]);
        let (_, out) = run(&object, SPAN_A);
        let env = out.pointer(CONTAINERS[1]).unwrap()["env"]
            .as_array()
            .unwrap()
            .clone();
        let ra = env
            .iter()
            .position(|v| v["name"] == "OTEL_RESOURCE_ATTRIBUTES")
            .unwrap();
        let last_before = env[..ra]
            .iter()
            .rev()
            .find(|v| v["name"] == "JOBTRACE_POD_NAME")
            .unwrap();
        assert_eq!(
            last_before["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.name"
        );
        let (again, _) = run(&out, SPAN_B);
        assert!(again.patch.0.is_empty(), "{:?}", again.patch);
    }

    #[test]
    fn a_helper_the_apiserver_defaulted_is_still_the_helper() {
        let (_, mut out) = run(&job(&json!({ "traceparent": TP })), SPAN_A);
        for var in out["spec"]["template"]["spec"]["containers"][1]["env"]
            .as_array_mut()
            .unwrap()
        {
            if let Some(field) = var.pointer_mut("/valueFrom/fieldRef") {
                field["apiVersion"] = json!("v1");
            }
        }
        let (again, _) = run(&out, SPAN_B);
        assert!(again.patch.0.is_empty(), "{:?}", again.patch);
    }
}
