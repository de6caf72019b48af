/*
 * skiff's pause program: the first process of every pod's pause container.
 * It holds the pod's network namespace, reaps the zombies that end up as its
 * children, and exits 0 on SIGTERM or SIGINT. Built statically by build.rs
 * and put into a FROM scratch image by the agent.
 */
#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>

static volatile sig_atomic_t stopping;

static void on_stop(int sig) {
    (void)sig;
    stopping = 1;
}

static void on_child(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(void) {
    sigset_t blocked, waiting;
    struct sigaction stop = {0}, child = {0};

    stop.sa_handler = on_stop;
    sigaction(SIGTERM, &stop, NULL);
    sigaction(SIGINT, &stop, NULL);
    child.sa_handler = on_child;
    child.sa_flags = SA_NOCLDSTOP | SA_RESTART;
    sigaction(SIGCHLD, &child, NULL);

    /* Block the signals outside sigsuspend so none is lost between the
     * check of `stopping` and the wait. */
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGTERM);
    sigaddset(&blocked, SIGINT);
    sigaddset(&blocked, SIGCHLD);
    sigprocmask(SIG_BLOCK, &blocked, &waiting);
    sigdelset(&waiting, SIGTERM);
    sigdelset(&waiting, SIGINT);
    sigdelset(&waiting, SIGCHLD);
    while (!stopping) {
        sigsuspend(&waiting);
    }
    return 0;
}
