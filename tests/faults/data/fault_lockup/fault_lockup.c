// A module whose init spins for 6 s with preemption disabled: the soft lockup detector fires
// (after 2 * watchdog_thresh seconds) while interrupts still run.
#include <linux/jiffies.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/preempt.h>
static int __init fault_lockup_init(void)
{
	unsigned long end = jiffies + 6 * HZ;

	pr_emerg("kit_fault: fault_lockup starts\n");
	preempt_disable();
	while (time_before(jiffies, end))
		cpu_relax();
	preempt_enable();
	return 0;
}
static void __exit fault_lockup_exit(void)
{
}
module_init(fault_lockup_init);
module_exit(fault_lockup_exit);
MODULE_LICENSE("GPL");
