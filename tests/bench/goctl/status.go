// An AppTask's status computed from its Deployment, as ssa_controller.status.compute does for a
// Deployment applied without trouble (Sync.synced): observedGeneration, phase, readyReplicas,
// the Ready, Synced and Conflict conditions (lastTransitionTime kept while a condition's status
// stays the same) and deploymentName.
package main

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	phaseReady       = "Ready"
	phaseProgressing = "Progressing"
	phaseDegraded    = "Degraded"
	reasonReady      = "DeploymentReady"
	reasonProgress   = "DeploymentProgressing"
)

// readiness is (ready, reason, message, readyReplicas) of the Deployment.
func readiness(d *appsv1.Deployment) (bool, string, string, int32) {
	desired := int32(1)
	if d.Spec.Replicas != nil {
		desired = *d.Spec.Replicas
	}
	st := d.Status
	if st.ObservedGeneration < d.Generation {
		return false, reasonProgress, fmt.Sprintf(
			"waiting for the Deployment controller to observe generation %d (observed: %d)",
			d.Generation, st.ObservedGeneration), st.ReadyReplicas
	}
	for _, c := range st.Conditions {
		if c.Type == appsv1.DeploymentReplicaFailure && c.Status == corev1.ConditionTrue ||
			c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse {
			reason := c.Reason
			if reason == "" {
				reason = string(c.Type)
			}
			return false, reason, c.Message, st.ReadyReplicas
		}
	}
	if st.UpdatedReplicas >= desired && st.AvailableReplicas >= desired &&
		st.Replicas == st.UpdatedReplicas {
		return true, reasonReady, fmt.Sprintf("%d/%d replicas ready", st.ReadyReplicas, desired),
			st.ReadyReplicas
	}
	message := fmt.Sprintf("%d/%d replicas ready, %d updated", st.ReadyReplicas, desired,
		st.UpdatedReplicas)
	return false, reasonProgress, message, st.ReadyReplicas
}

func condition(kind string, ok bool, reason, message string, generation int64) metav1.Condition {
	status := metav1.ConditionFalse
	if ok {
		status = metav1.ConditionTrue
	}
	return metav1.Condition{Type: kind, Status: status, Reason: reason, Message: message,
		ObservedGeneration: generation}
}

// computeStatus is the status `at` should have given its Deployment d; `current` is the status
// it has (whose conditions lend their lastTransitionTime), `now` stamps the others.
func computeStatus(at *AppTask, current *AppTaskStatus, d *appsv1.Deployment,
	now metav1.Time) AppTaskStatus {
	ready, reason, message, readyReplicas := readiness(d)
	phase := phaseDegraded
	if ready {
		phase = phaseReady
	} else if reason == reasonProgress {
		phase = phaseProgressing
	}
	conditions := []metav1.Condition{
		condition("Ready", ready, reason, message, at.Generation),
		condition("Synced", true, "Synced", fmt.Sprintf("Deployment %s matches the spec", at.Name),
			at.Generation),
		condition("Conflict", false, "NoConflict", "no other manager contests the fields",
			at.Generation),
	}
	for i := range conditions {
		conditions[i].LastTransitionTime = now
		for _, before := range current.Conditions {
			if before.Type == conditions[i].Type && before.Status == conditions[i].Status &&
				!before.LastTransitionTime.IsZero() {
				conditions[i].LastTransitionTime = before.LastTransitionTime
			}
		}
	}
	return AppTaskStatus{ObservedGeneration: at.Generation, Phase: phase,
		ReadyReplicas: readyReplicas, Conditions: conditions, DeploymentName: d.Name}
}
