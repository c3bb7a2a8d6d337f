/*
 * A bare-metal AArch64 program that plays a scripted serial console on QEMU virt's PL011
 * (0x09000000), so orch's runner can be tested against real QEMU without an seL4 build.
 * The script is chosen at build time with -DSCENARIO=SCENARIO_<NAME>:
 *   FAIL      the seL4 vm_minimal 4K-frame allocation failure (with the kernel's ANSI colours),
 *             then hangs like the real VMM does;
 *   LOGIN     an seL4 + Linux + Buildroot-like boot to "buildroot login: ", then a tiny shell
 *             that answers root, `free -m` and `cat /proc/meminfo` (figures from -D MEM_*);
 *   SILENT    hangs without printing anything;
 *   SEL4_HANG prints the ELF-loader and seL4 boot lines, then hangs;
 *   POWEROFF  prints one line and powers the machine off (PSCI SYSTEM_OFF): QEMU exits at once.
 *   VMM       a miniature of the VMM's allocator: the guest RAM (fixture_vm_ram_size) in
 *             frames of 2^FRAME_SIZE_BITS bytes, each costing VMM_FRAME_COST bytes of the pool
 *             (fixture_mempool_size, plus VMM_POOL_OVERHEAD): too small a pool gives the FAIL
 *             console, enough gives the LOGIN one. The sizes are constants of another file
 *             (generated from devices.camkes by the e2e fixture's build), so a build that
 *             only changes them recompiles that file alone. fixture_glitch_pool, when not
 *             zero, inverts the outcome for exactly that pool size (a planted non-monotone point).
 * DECISIVE_DELAY_MS delays the decisive line (failure or login prompt), for latency benchmarks.
 */
/* Only one scenario is compiled in; the others are unused on purpose. */
#pragma GCC diagnostic ignored "-Wunused-function"

#define SCENARIO_FAIL 1
#define SCENARIO_LOGIN 2
#define SCENARIO_SILENT 3
#define SCENARIO_SEL4_HANG 4
#define SCENARIO_POWEROFF 5
#define SCENARIO_VMM 6

#ifndef SCENARIO
#define SCENARIO SCENARIO_LOGIN
#endif
#ifndef DECISIVE_DELAY_MS
#define DECISIVE_DELAY_MS 0
#endif
/* `free -m` figures (MiB) and /proc/meminfo figures (kB): a 2 GiB guest on a 6.1 kernel. */
#ifndef MEM_TOTAL_MIB
#define MEM_TOTAL_MIB 1983
#endif
#ifndef MEM_USED_MIB
#define MEM_USED_MIB 26
#endif
#ifndef MEM_FREE_MIB
#define MEM_FREE_MIB 1954
#endif
#ifndef MEM_SHARED_MIB
#define MEM_SHARED_MIB 1
#endif
#ifndef MEM_CACHE_MIB
#define MEM_CACHE_MIB 1
#endif
#ifndef MEM_AVAILABLE_MIB
#define MEM_AVAILABLE_MIB 1925
#endif
#ifndef MEMTOTAL_KB
#define MEMTOTAL_KB 2030616
#endif
#ifndef MEMFREE_KB
#define MEMFREE_KB 2001144
#endif
#ifndef MEMAVAILABLE_KB
#define MEMAVAILABLE_KB 1971360
#endif

#define UART_BASE 0x09000000UL
#define UART_DR (*(volatile unsigned int *)(UART_BASE + 0x00))
#define UART_FR (*(volatile unsigned int *)(UART_BASE + 0x18))
#define FR_RXFE (1u << 4)
#define FR_TXFF (1u << 5)

void psci_system_off(void);
int main(void);

static void putc_raw(char c)
{
    while (UART_FR & FR_TXFF) {
    }
    UART_DR = (unsigned int)(unsigned char)c;
}

static void puts_raw(const char *s)
{
    while (*s) {
        putc_raw(*s++);
    }
}

/* One console line: text then CRLF, as a serial console prints it. */
static void line(const char *s)
{
    puts_raw(s);
    puts_raw("\r\n");
}

static void hang(void)
{
    for (;;) {
        __asm__ volatile("wfe");
    }
}

static unsigned long counter(void)
{
    unsigned long v;
    __asm__ volatile("isb; mrs %0, cntvct_el0" : "=r"(v));
    return v;
}

static void delay_ms(unsigned long ms)
{
    unsigned long freq;
    __asm__ volatile("mrs %0, cntfrq_el0" : "=r"(freq));
    unsigned long end = counter() + freq / 1000 * ms;
    while (counter() < end) {
    }
}

/* Right-aligned decimal in a field of `width` characters. */
static void put_num(unsigned long v, int width)
{
    char buf[24];
    int n = 0;
    do {
        buf[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v && n < (int)sizeof(buf));
    for (int pad = width - n; pad > 0; pad--) {
        putc_raw(' ');
    }
    while (n) {
        putc_raw(buf[--n]);
    }
}

static void elfloader_and_sel4_boot(void)
{
    line("");
    line("ELF-loader started on CPU: ARM Ltd. Cortex-A53 r0p4");
    line("  paddr=[c27fb000..c4b8908f]");
    line("No DTB passed in from boot loader.");
    line("Looking for DTB in CPIO archive...found at c2839b10.");
    line("Loaded DTB from c2839b10.");
    line("   paddr=[c0240000..c0241fff]");
    line("ELF-loading image 'kernel' to c0000000");
    line("  paddr=[c0000000..c023ffff]");
    line("  vaddr=[80c0000000..80c023ffff]");
    line("  virt_entry=80c0000000");
    line("ELF-loading image 'rootserver' to c0242000");
    line("  paddr=[c0242000..c27dafff]");
    line("  vaddr=[400000..2998fff]");
    line("  virt_entry=408f38");
    line("Enabling hypervisor MMU and paging");
    line("Jumping to kernel-image entry point...");
    line("");
    line("Bootstrapping kernel");
    line("Warning: Could not infer GIC interrupt target ID, assuming 0.");
    line("available phys memory regions: 1");
    line("  [c0000000..140000000)");
    line("reserved virt address space regions: 3");
    line("  [80c0000000..80c0240000)");
    line("  [80c0240000..80c0241e98)");
    line("  [80c0242000..80c27db000)");
    line("Booting all finished, dropped to user space");
}

static void vmm_start(void)
{
    line("run@main.c:1332 Invalid 'num_vcpus' attribute setting: Exceeds maximum number of "
         "supported nodes. Capping value to CONFIG_MAX_NUM_NODES (1)");
    line("clean_up@fdtgen.c:374 Non-existing node /platform@c000000 specified to be kept");
    line("install_vm_devices@main.c:704 module name: map_frame_hack");
    line("install_vm_devices@main.c:704 module name: init_ram");
}

static void untyped_retype_note(void)
{
    line("\033[0m\033[1m<<\033[0m\033[32mseL4(CPU 0)\033[0m\033[1m [decodeUntypedInvocation/204 "
         "T0x813f81b400 \"rootserver\" @4006d8]: Untyped Retype: Insufficient memory "
         "(1 * 2097152 bytes needed, 0 bytes available).>>\033[0m");
}

static void failure_console(void)
{
    elfloader_and_sel4_boot();
    untyped_retype_note();
    vmm_start();
    delay_ms(DECISIVE_DELAY_MS);
    line("ram_ut_alloc_iterator@guest_ram.c:304 Failed to allocate page");
    line("map_vm_memory_reservation@guest_memory.c:477 Failed to get frame for reservation "
         "address 0x8e83a000");
    line("map_ram_reservation@guest_ram.c:327 Failed to map new ram reservation");
    line("Assertion failed: !err (/host/ws/projects/vm/components/VM_Arm/src/modules/init_ram.c: "
         "init_ram_module: 21)");
    hang();
}

static void linux_boot(void)
{
    line("Loading Kernel: 'linux'");
    line("Loading Initrd: 'linux-initrd'");
    line("Loading Generated DTB");
    line("OnDemandInstall: Created device-backed memory for addr 0x9000000");
    line("[    0.000000] Booting Linux on physical CPU 0x0000000000 [0x410fd034]");
    line("[    0.000000] Machine model: linux,dummy-virt");
    line("[    1.005597] Run /init as init process");
    line("Starting syslogd: OK");
    line("Starting network: OK");
    line("");
    line("Welcome to Buildroot");
}

static char getc_raw(void)
{
    while (UART_FR & FR_RXFE) {
    }
    return (char)(UART_DR & 0xff);
}

/* Read one line with terminal echo; returns its length (without the line end). */
static int read_line(char *buf, int size)
{
    int n = 0;
    for (;;) {
        char c = getc_raw();
        if (c == '\r' || c == '\n') {
            puts_raw("\r\n");
            buf[n] = 0;
            return n;
        }
        if (n < size - 1) {
            buf[n++] = c;
            putc_raw(c);
        }
    }
}

static int streq(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

static void free_m(void)
{
    line("              total        used        free      shared  buff/cache   available");
    puts_raw("Mem:   ");
    put_num(MEM_TOTAL_MIB, 12);
    put_num(MEM_USED_MIB, 12);
    put_num(MEM_FREE_MIB, 12);
    put_num(MEM_SHARED_MIB, 12);
    put_num(MEM_CACHE_MIB, 12);
    put_num(MEM_AVAILABLE_MIB, 12);
    puts_raw("\r\n");
    line("Swap:             0           0           0");
}

static void meminfo_line(const char *key, unsigned long kb)
{
    puts_raw(key);
    put_num(kb, 16 - 1 - (int)__builtin_strlen(key) + 8);
    puts_raw(" kB\r\n");
}

static void meminfo(void)
{
    meminfo_line("MemTotal:", MEMTOTAL_KB);
    meminfo_line("MemFree:", MEMFREE_KB);
    meminfo_line("MemAvailable:", MEMAVAILABLE_KB);
    meminfo_line("Buffers:", 0);
    meminfo_line("Cached:", 1024);
    meminfo_line("SwapTotal:", 0);
}

static void shell(void)
{
    char cmd[128];
    for (;;) {
        puts_raw("# ");
        if (read_line(cmd, sizeof(cmd)) == 0) {
            continue;
        }
        if (streq(cmd, "free -m")) {
            free_m();
        } else if (streq(cmd, "cat /proc/meminfo")) {
            meminfo();
        } else if (streq(cmd, "poweroff")) {
            psci_system_off();
        } else {
            puts_raw("-sh: ");
            puts_raw(cmd);
            puts_raw(": not found\r\n");
        }
    }
}

static void login_console(void)
{
    char user[64];
    elfloader_and_sel4_boot();
    vmm_start();
    linux_boot();
    delay_ms(DECISIVE_DELAY_MS);
    for (;;) {
        puts_raw("buildroot login: ");
        read_line(user, sizeof(user));
        if (streq(user, "root")) {
            shell();
        }
        line("Login incorrect");
    }
}

#if SCENARIO == SCENARIO_VMM
#ifndef VMM_FRAME_COST
#define VMM_FRAME_COST 256UL /* two ~128-byte allocator nodes per frame */
#endif
#ifndef VMM_POOL_OVERHEAD
#define VMM_POOL_OVERHEAD 0x80000UL /* 512 KiB the VMM takes before guest RAM */
#endif
extern const unsigned long fixture_vm_ram_size;
extern const unsigned long fixture_mempool_size;
extern const unsigned long fixture_glitch_pool;

static void vmm_console(void)
{
    unsigned long frames = fixture_vm_ram_size >> FRAME_SIZE_BITS;
    int fits = fixture_mempool_size >= frames * VMM_FRAME_COST + VMM_POOL_OVERHEAD;
    if (fixture_glitch_pool != 0 && fixture_mempool_size == fixture_glitch_pool) {
        fits = !fits;
    }
    if (fits) {
        login_console();
    } else {
        failure_console();
    }
}
#endif

int main(void)
{
#if SCENARIO == SCENARIO_FAIL
    failure_console();
#elif SCENARIO == SCENARIO_LOGIN
    login_console();
#elif SCENARIO == SCENARIO_SILENT
    hang();
#elif SCENARIO == SCENARIO_SEL4_HANG
    elfloader_and_sel4_boot();
    hang();
#elif SCENARIO == SCENARIO_POWEROFF
    line("powering off");
    psci_system_off();
#elif SCENARIO == SCENARIO_VMM
    vmm_console();
#else
#error "unknown SCENARIO"
#endif
    return 0;
}
